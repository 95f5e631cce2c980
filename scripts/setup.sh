#!/usr/bin/env bash
# Set up aif on a fresh machine: system packages, .venv, torch (CPU), aihwkit built
# from its sdist against that torch, the aif package, and a real analog tile check.
#
# Why aihwkit is built here: the wheel on PyPI is compiled against another torch and
# breaks silently ("Invalid weights dimensions"). Building the sdist with
# --no-build-isolation links it to the torch in .venv. pip caches the built wheel, so a
# second run takes seconds.
#
# Usage: scripts/setup.sh            (idempotent; re-run at will)
#        AIF_VENV=/path scripts/setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${AIF_VENV:-.venv}"
TORCH_VERSION="${AIF_TORCH_VERSION:-2.13.0}"
AIHWKIT_VERSION="1.2.0"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. System packages: OpenBLAS for aihwkit's C++ simulator.
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    say "installing libopenblas-dev"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev >/dev/null
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# The aihwkit build runs tools (stubgen, cmake, ninja) from the venv by name.
export PATH="$(cd "$VENV/bin" && pwd):$PATH"
pip_q() {
    # pip here also reads local file:// indexes and warns for each package they lack;
    # keep those lines out of the way and everything else (errors included) visible.
    "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
PIP=(pip_q)

# 3. torch, pinned: a bare `torch` would pull several GB of CUDA builds.
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    say "installing torch==$TORCH_VERSION"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

# 4. aihwkit from its sdist, against the installed torch.
build_aihwkit() {
    say "building aihwkit==$AIHWKIT_VERSION against torch $TORCH_VERSION (about 4 minutes the first time)"
    "${PIP[@]}" install 'cmake>=4.2.1' scikit-build 'pybind11>=3.0.1' ninja setuptools wheel mypy
    MAX_JOBS="$(nproc)" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "${PIP[@]}" install --no-build-isolation --no-deps "$@" "aihwkit==$AIHWKIT_VERSION"
}
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('aihwkit') == '$AIHWKIT_VERSION' else 1)" 2>/dev/null; then
    build_aihwkit
fi
# aihwkit's runtime needs, without torchvision (no CPU build of it exists here, and
# aihwkit only imports it in its dataset helpers, which aif does not use).
"${PIP[@]}" install scikit-learn scipy 'requests>=2.25,<3' 'protobuf>=4.21.6' tqdm typing_extensions

# 5. aif itself, editable, with its test extras. Its dependencies come from
# pyproject.toml; torch and aihwkit are skipped because they are installed above and a
# resolver run over aihwkit's metadata would pull torchvision and CUDA torch.
"${PIP[@]}" install --no-deps -e .
"$PY" - <<'PYEOF' > "$VENV/aif-requirements.txt"
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
for req in reqs:
    name = req.split(";")[0].strip()
    if name.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower() in {"torch", "aihwkit"}:
        continue
    print(req)
PYEOF
"${PIP[@]}" install -r "$VENV/aif-requirements.txt"

# 6. Prove the compiled simulator works with this torch: a real analog tile. An aihwkit
# built against another torch (an old wheel in pip's cache, a torch upgrade) fails here;
# it is then rebuilt once from source, bypassing the cache, and checked again.
tile_check() {
"$PY" - <<'PYEOF'
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import SingleRPUConfig
from aihwkit.simulator.configs.devices import ConstantStepDevice

torch.manual_seed(0)
layer = AnalogLinear(4, 2, bias=True, rpu_config=SingleRPUConfig(device=ConstantStepDevice()))
opt = AnalogSGD(layer.parameters(), lr=0.1)
opt.regroup_param_groups(layer)
x = torch.rand(8, 4)
before = layer.get_weights()[0].clone()
out = layer(x)
assert out.shape == (8, 2), out.shape
out.pow(2).sum().backward()
opt.step()
after = layer.get_weights()[0]
assert not torch.equal(before, after), "analog update did not change the weights"
print(f"[setup] aihwkit tile OK: torch {torch.__version__}, forward/backward/update on a SingleRPUConfig AnalogLinear")
PYEOF
}
say "checking a real aihwkit analog tile"
if ! tile_check; then
    say "the analog tile check failed: rebuilding aihwkit against torch $TORCH_VERSION"
    build_aihwkit --force-reinstall --no-cache-dir
    tile_check
fi
say "done: activate with 'source $VENV/bin/activate'"

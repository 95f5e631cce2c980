#!/usr/bin/env bash
# Set up aif on a fresh machine: system packages, .venv, torch (CPU), aihwkit built
# from its sdist against that torch, the aif package, and a real analog tile check.
#
# Why aihwkit is built here: the wheel on PyPI is compiled against another torch and
# breaks silently ("Invalid weights dimensions"). Building the sdist with
# --no-build-isolation links it to the torch in .venv. pip caches the built wheel, so a
# second run takes seconds.
#
# The venv then guards itself (step 4): a later `pip install SOMETHING` in it, such as a
# plug-in that depends on aif, can neither replace this torch (with a CUDA build and its
# nvidia wheels) nor pull torchvision. See docs/plugging-in-hardware.md.
#
# With CUDA: when nvcc, a CUDA torch of nvcc's CUDA major version and the cuBLAS and
# cuRAND headers are all here, aihwkit is built with CUDA as well (RPUCuda tiles on the
# GPU), for the GPUs nvidia-smi lists; AIF_AIHWKIT_CUDA=1 insists (and fails saying
# what is missing), AIF_AIHWKIT_CUDA=0 builds for the CPU only. scripts/aihwkit_flavour.py
# decides. Without CUDA, the torch-tile families (TorchInferenceRPUConfig ...) still run
# on any GPU torch sees. See docs/gpu.md.
#
# Usage: scripts/setup.sh            (idempotent; re-run at will)
#        AIF_VENV=/path scripts/setup.sh
#        AIF_AIHWKIT_CUDA=1 AIF_CUDA_ARCHITECTURES=90 scripts/setup.sh
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

# 1b. Chromium for the browser tests of the web Composer (tests/browser/, driven by
# Playwright with this browser: nothing is downloaded at test time).
if [ ! -x /usr/bin/chromium ]; then
    say "installing chromium"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
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

# 3. torch, pinned: a bare `torch` would pull several GB of CUDA builds. The guard
# (step 4) pins the torch installed before, so it is lifted for this one step that may
# change torch, and written anew right after.
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    say "installing torch==$TORCH_VERSION"
    rm -f "$VENV/pip.conf"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

# 4. The guard. pip re-resolves the whole dependency tree of whatever it installs: a
# plug-in that depends on `aif` brings aif's `torch>=2.1` and `aihwkit==1.2.0`, and
# aihwkit's metadata requires torchvision. Left alone, pip answers with the newest CUDA
# torch, torchvision, triton and the nvidia wheels, and aihwkit, linked to this torch,
# then breaks silently. Two parts stop that:
#  a. A constraints file pins torch to the exact build installed (`2.13.0+cpu`, local
#     label included, so not even PyPI's CUDA `2.13.0` fits) and aihwkit to its version.
#     The venv's own pip.conf names it: pip reads $VENV/pip.conf (its "site"
#     configuration) on every run of this venv's pip, activated or not, so a plain
#     `pip install X` obeys it, and a request that conflicts fails (ResolutionImpossible)
#     instead of replacing anything. The site setting replaces the user's or machine's
#     `constraint`, so their files are named there too. Only the environment gets past
#     it (PIP_CONSTRAINT, or PIP_CONFIG_FILE=/dev/null), or an explicit `--constraint`
#     that is added to it.
#  b. aihwkit is installed from its built wheel repacked without `Requires-Dist:
#     torchvision` (step 5). aif never imports torchvision (aihwkit does only in its
#     dataset helpers), and no CPU build of it matches this torch here. `wheel unpack` /
#     `wheel pack` rewrite RECORD with the new METADATA's hash, so pip installs,
#     uninstalls and `pip check`s it like any other wheel: nothing installed is edited.
CONSTRAINTS="$(cd "$VENV" && pwd)/aif-constraints.txt"
TORCH_INSTALLED="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
{
    echo "# Written by scripts/setup.sh (re-run it to refresh) and named by pip.conf beside it:"
    echo "# every pip install in this venv keeps torch as installed and aihwkit at its version."
    echo "torch==$TORCH_INSTALLED"
    echo "aihwkit==$AIHWKIT_VERSION"
} >"$CONSTRAINTS"
INHERITED="$("$PY" -m pip config --user get global.constraint 2>/dev/null ||
    "$PY" -m pip config --global get global.constraint 2>/dev/null || true)"
{
    echo "# Written by scripts/setup.sh: pip reads this file on every run of this venv's pip."
    echo "# aif-constraints.txt keeps torch and aihwkit as setup.sh installed them; any other"
    echo "# file named here is the user's or the machine's own pip constraint, kept."
    echo "[global]"
    echo "constraint = $CONSTRAINTS${INHERITED:+ $INHERITED}"
} >"$VENV/pip.conf"

# 5. aihwkit from its sdist, against the installed torch, without torchvision (4b), for
# the CPU or with CUDA (see the top). A CUDA build is labelled in its version
# (1.2.0+cu128, which still satisfies ==1.2.0), so which one is installed is read from
# metadata, and it is built into a pip cache of its own: pip keys its wheel cache by the
# sdist alone, and a CPU setup must never be handed a CUDA wheel from it, or the reverse.
FLAVOUR_LINE="$("$PY" scripts/aihwkit_flavour.py)"
read -r FLAVOUR NVCC_VERSION CUDA_LABEL CUDA_ARCHS <<<"$FLAVOUR_LINE"
AIHWKIT_BUILT="$AIHWKIT_VERSION"
if [ "$FLAVOUR" = cuda ]; then AIHWKIT_BUILT="$AIHWKIT_VERSION+cu$CUDA_LABEL"; fi
aihwkit_ok() {
    "$PY" - "$AIHWKIT_BUILT" 2>/dev/null <<'PYEOF'
import importlib.metadata as m
import re
import sys

names = {re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0].lower() for r in m.requires("aihwkit") or []}
sys.exit(0 if m.version("aihwkit") == sys.argv[1] and "torchvision" not in names else 1)
PYEOF
}
install_aihwkit() {
    local cache=()
    if [ "$FLAVOUR" = cuda ]; then
        say "building aihwkit==$AIHWKIT_BUILT with CUDA $NVCC_VERSION (architectures: $CUDA_ARCHS) against torch $TORCH_VERSION (long: tens of minutes on few cores)"
        [ $# -gt 0 ] || cache=(--cache-dir "$("$PY" -m pip cache dir)/aif-aihwkit-cu$CUDA_LABEL")
    else
        say "building aihwkit==$AIHWKIT_VERSION against torch $TORCH_VERSION (about 4 minutes the first time)"
    fi
    "${PIP[@]}" install 'cmake>=4.2.1' scikit-build 'pybind11>=3.0.1' ninja setuptools wheel mypy
    local work="$VENV/.aihwkit-wheel"
    rm -rf "$work"
    (
        export MAX_JOBS="$(nproc)" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" USE_CUDA=OFF
        if [ "$FLAVOUR" = cuda ]; then
            # aihwkit's CMakeLists reads USE_CUDA from the environment; scikit-build
            # passes CMAKE_ARGS on to cmake ("-" architectures: aihwkit's own list).
            CUDACXX="${CUDACXX:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
            export USE_CUDA=ON CUDACXX
            export CMAKE_ARGS="${CMAKE_ARGS:+$CMAKE_ARGS }-DUSE_CUDA=ON"
            [ "$CUDA_ARCHS" = - ] || CMAKE_ARGS+=" -DRPU_CUDA_ARCHITECTURES=$CUDA_ARCHS"
        fi
        "${PIP[@]}" wheel --no-build-isolation --no-deps "${cache[@]}" "$@" -w "$work/built" \
            "aihwkit==$AIHWKIT_VERSION"
    )
    "$PY" -m wheel unpack -d "$work/tree" "$work"/built/aihwkit-*.whl >/dev/null
    sed -i -E '/^Requires-Dist: *torchvision([^A-Za-z0-9._-]|$)/Id' \
        "$work"/tree/aihwkit-*/aihwkit-*.dist-info/METADATA
    local label=()  # a CUDA build's version label, in METADATA and the wheel's name
    [ "$FLAVOUR" = cpu ] || label=(--local-version "cu$CUDA_LABEL")
    mkdir -p "$work/repacked"
    "$PY" -m wheel pack "${label[@]}" -d "$work/repacked" "$work"/tree/aihwkit-* >/dev/null
    "${PIP[@]}" install --no-deps --force-reinstall "$work"/repacked/aihwkit-*.whl
    rm -rf "$work"
    if ! aihwkit_ok; then
        say "aihwkit $AIHWKIT_VERSION still requires torchvision after its repack; see step 4b"
        exit 1
    fi
}
if ! aihwkit_ok; then
    install_aihwkit
fi
# aihwkit's runtime needs, without torchvision (no CPU build of it exists here, and
# aihwkit only imports it in its dataset helpers, which aif does not use).
"${PIP[@]}" install scikit-learn scipy 'requests>=2.25,<3' 'protobuf>=4.21.6' tqdm typing_extensions

# 6. aif itself, editable, with its test extras. Its dependencies come from
# pyproject.toml; torch and aihwkit are skipped because they are installed above (and
# the guard would keep them anyway).
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

# 7. Prove the compiled simulator works with this torch: a real analog tile. An aihwkit
# built against another torch (an old wheel in pip's cache, a torch upgrade) fails here;
# it is then rebuilt once from source, bypassing the cache, and checked again.
tile_check() {
AIF_FLAVOUR="$FLAVOUR" "$PY" - <<'PYEOF'
import os

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
from aihwkit.simulator.rpu_base import cuda

wanted = os.environ["AIF_FLAVOUR"] == "cuda"
assert cuda.is_compiled() == wanted, f"aihwkit's cuda.is_compiled() is {cuda.is_compiled()}"
where = "cpu"
if wanted and torch.cuda.is_available():
    layer = layer.cuda()
    assert layer(x.cuda()).shape == (8, 2)
    where = "cpu and cuda"
print(f"[setup] aihwkit tile OK: torch {torch.__version__}, forward/backward/update on a SingleRPUConfig AnalogLinear ({where})")
PYEOF
}
say "checking a real aihwkit analog tile"
if ! tile_check; then
    say "the analog tile check failed: rebuilding aihwkit against torch $TORCH_VERSION"
    install_aihwkit --no-cache-dir
    tile_check
fi
# 8. Every installed package has what it requires (aihwkit too, now without torchvision).
if ! "$PY" -m pip check >/dev/null; then
    "$PY" -m pip check >&2 || true
    say "pip check failed: an installed package lacks a requirement (above)"
    exit 1
fi
say "done: activate with 'source $VENV/bin/activate'"

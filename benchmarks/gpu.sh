#!/usr/bin/env bash
# aif on a GPU machine that has a CUDA torch and no network, in one command of under
# 10 minutes: a venv over the machine's torch, aif's dependencies from wheels brought
# along, aihwkit built against that torch, then benchmarks/gpu.py (the device sweep and
# the ResNet) on cuda and on cpu. The last line printed is gpu.py's JSON object, with
# cuda_speedup; every phase says how long it has been going. See docs/gpu.md.
#
#   benchmarks/gpu.sh --prepare      here, with network: fill benchmarks/gpu-wheels/
#                                    (Python 3.12 wheels, xz-packed: 60 MiB of the 64 the
#                                    device machine takes along)
#   benchmarks/gpu.sh [options]      there: set up, build, benchmark
#   benchmarks/gpu.sh --self-test    here: the folder's layout, then gpu.py on cpu with
#                                    tiny sizes in this checkout's .venv (under a minute)
#
# Options there:
#   --cuda-build   also try aihwkit with CUDA (nvcc, cuBLAS and cuRAND needed; only the
#                  present GPU's architecture), within what the time limit leaves;
#                  otherwise, or when it fails, aihwkit is built for the CPU and the
#                  benchmark runs TorchInferenceRPUConfig (plain torch tiles) on cuda
#   --budget S     seconds for the benchmark runs (default: what is left of 9 minutes)
#   --quick        gpu.py's small sizes
#   --devices D    cuda,cpu (default)
#
# The venv (.gpu-venv) stays in the checkout: on a machine still warm, a second run
# skips the install and the build. Environment: AIF_GPU_WHEELS (the folder),
# AIF_GPU_VENV, AIF_GPU_PYTHON (3.12: the Python the wheels are for), AIF_GPU_LIMIT
# (540 s for everything), AIF_CUDA_ARCHITECTURES (for --cuda-build).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${AIF_GPU_WHEELS:-benchmarks/gpu-wheels}"
VENV="${AIF_GPU_VENV:-.gpu-venv}"
PYTHON_VERSION="${AIF_GPU_PYTHON:-3.12}" # the GPU machine's; the wheels are for it
LIMIT="${AIF_GPU_LIMIT:-540}" # seconds, of the machine's 600 per command
MODE=run CUDA_BUILD=0 BUDGET="" DEVICES=cuda,cpu
GPU_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --prepare) MODE=prepare ;;
    --self-test) MODE=self-test ;;
    --cuda-build) CUDA_BUILD=1 ;;
    --budget) BUDGET="$2" && shift ;;
    --quick) GPU_ARGS+=(--quick) ;;
    --devices) DEVICES="$2" && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done

T0=$SECONDS
phase() { printf '[gpu.sh %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
left() { echo $((LIMIT - (SECONDS - T0))); }

# --------------------------------------------------------------------------- here

prepare() {
    local py=.venv/bin/python
    [ -x "$py" ] || { echo "gpu.sh --prepare: run scripts/setup.sh first (.venv)" >&2 && exit 1; }
    rm -rf "$DIR"
    mkdir -p "$DIR"
    phase "requirements: aif's, less torch (the machine's), aihwkit (built there), matplotlib and pillow (plots and image folders, which the benchmark does not use)"
    "$py" - >"$DIR/requirements.txt" <<'PYEOF'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
skip = {"torch", "aihwkit", "matplotlib", "pillow"}
print("# Written by benchmarks/gpu.sh --prepare: what gpu.sh installs offline.")
for dep in deps:
    if re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower() not in skip:
        print(dep)
print("# aihwkit's own needs, without torchvision (see scripts/setup.sh, step 4b)")
print("scipy\nrequests>=2.25,<3\nprotobuf>=4.21.6\ntqdm\ntyping_extensions")
print("# to build aihwkit (its build-system requires, less mypy for a stub step) and a CBLAS")
print("setuptools>=77.0.0\nwheel\nscikit-build>=0.18.1\npybind11>=3.0.1\nninja\ncmake>=4.2.1")
print("scipy-openblas32")
PYEOF
    phase "downloading wheels for CPython $PYTHON_VERSION, manylinux x86_64"
    PIP_CONFIG_FILE=/dev/null "$py" -m pip download -q --disable-pip-version-check \
        --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DIR" -r "$DIR/requirements.txt"
    phase "downloading the aihwkit 1.2.0 sdist"
    "$py" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        --no-build-isolation -d "$DIR" aihwkit==1.2.0
    phase "packing (uncompressed wheels in one tar.xz; cmake without ctest and cpack)"
    "$py" benchmarks/gpu_wheels.py pack "$DIR"
    "$py" benchmarks/gpu_wheels.py check "$DIR" "$PYTHON_VERSION"
    phase "ready: $(du -sh "$DIR" | cut -f1) in $DIR; carry it: run(carry=[\"$DIR\"], command=\"bash benchmarks/gpu.sh\")"
}

self_test() {
    local py=.venv/bin/python
    if [ -f "$DIR/wheels.tar.xz" ]; then
        phase "checking $DIR"
        "$py" benchmarks/gpu_wheels.py check "$DIR" "$PYTHON_VERSION"
    else
        phase "no $DIR here (run --prepare to make one); its layout is not checked"
    fi
    phase "the flavour decision: $("$py" scripts/aihwkit_flavour.py 2>/dev/null)"
    phase "gpu.py on cpu, tiny sizes"
    "$py" -m benchmarks.gpu --quick --devices cpu --workloads "${AIF_GPU_WORKLOADS:-sweep,resnet}" \
        --budget "${BUDGET:-90}"
}

# --------------------------------------------------------------------------- there

python_with_torch() {
    local candidate
    for candidate in python3.12 python3 python; do
        if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    echo "gpu.sh: no Python here imports torch; this script runs on a machine with a CUDA torch" >&2
    exit 1
}

build_aihwkit() { # the line aihwkit_flavour.py prints, the wheels folder; BUILD_SECONDS
    local flavour="$1" wheels="$2" out="$VENV/aihwkit-built"
    local site include lib
    site="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
    read -r include lib <<<"$("$PY" benchmarks/gpu_wheels.py openblas "$site" "$VENV/openblas")"
    rm -rf "$out"
    (
        export MAX_JOBS="$(nproc)" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" USE_CUDA=OFF
        # scipy-openblas32 as aihwkit's CBLAS, found at run time through the rpath
        CMAKE_ARGS="-DOpenBLAS_INCLUDE_DIR=$include -DOpenBLAS_LIB=$lib"
        CMAKE_ARGS+=" -DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath,$(dirname "$lib")"
        CMAKE_ARGS+=" -DCMAKE_MODULE_LINKER_FLAGS=-Wl,-rpath,$(dirname "$lib")"
        local kind _version _label archs
        read -r kind _version _label archs <<<"$flavour"
        if [ "$kind" = cuda ]; then
            export USE_CUDA=ON CUDACXX="${CUDACXX:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
            CMAKE_ARGS+=" -DUSE_CUDA=ON"
            [ "$archs" = - ] || CMAKE_ARGS+=" -DRPU_CUDA_ARCHITECTURES=$archs"
        fi
        export CMAKE_ARGS
        timeout "$BUILD_SECONDS" "$PY" -m pip wheel -q --disable-pip-version-check \
            --no-build-isolation --no-deps --no-index --no-cache-dir --find-links "$wheels" \
            -w "$out" aihwkit==1.2.0
    ) >"$VENV/aihwkit-build.log" 2>&1 || return 1
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall \
        "$out"/aihwkit-*.whl
    echo "$flavour" >"$VENV/aihwkit-flavour"
}

built() { # cpu|cuda: an aihwkit of that flavour is installed in the venv and imports
    [ -f "$VENV/aihwkit-flavour" ] && grep -q "^$1" "$VENV/aihwkit-flavour" &&
        "$PY" -c "import aihwkit.simulator.rpu_base" 2>/dev/null
}

run_there() {
    SYS_PY="$(python_with_torch)"
    phase "python: $SYS_PY ($("$SYS_PY" -W ignore -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'))"
    local version
    version="$("$SYS_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$version" != "$PYTHON_VERSION" ]; then
        echo "gpu.sh: $SYS_PY is Python $version, the wheels in $DIR are for $PYTHON_VERSION (AIF_GPU_PYTHON=$version benchmarks/gpu.sh --prepare makes others)" >&2
        exit 1
    fi
    "$SYS_PY" benchmarks/gpu_wheels.py check "$DIR" "$PYTHON_VERSION"

    if [ ! -x "$VENV/bin/python" ]; then
        phase "venv $VENV over the machine's packages (its torch)"
        "$SYS_PY" -m venv --system-site-packages "$VENV"
        # torch may live in a venv or conda env of its own, which --system-site-packages
        # does not reach: its folder goes on sys.path after the venv's own packages
        "$SYS_PY" -W ignore -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' \
            >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/aif-machine-torch.pth"
    fi
    PY="$VENV/bin/python"
    export PATH="$(cd "$VENV/bin" && pwd):$PATH"
    local wheels="$VENV/wheels"
    if [ ! -f "$wheels/.unpacked" ] || [ "$DIR/wheels.tar.xz" -nt "$wheels/.unpacked" ]; then
        phase "unpacking the wheels"
        rm -rf "$wheels"
        "$PY" benchmarks/gpu_wheels.py unpack "$DIR" "$wheels"
        touch "$wheels/.unpacked"
    fi

    phase "installing aif's dependencies offline (torch kept as the machine has it)"
    "$PY" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' >"$VENV/constraints.txt"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$wheels" \
        -c "$VENV/constraints.txt" -r "$DIR/requirements.txt"
    # aif itself from this checkout (what is benchmarked is the code here), editable
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
        --no-build-isolation -e .
    # aihwkit's build runs stubgen (mypy) after linking, only to write type stubs
    if ! command -v stubgen >/dev/null; then
        printf '#!/bin/sh\n# gpu.sh: aihwkit type stubs are not needed here\nexit 0\n' >"$VENV/bin/stubgen"
        chmod +x "$VENV/bin/stubgen"
    fi

    local line
    if [ "$CUDA_BUILD" = 1 ] && ! built cuda; then
        # the flavour script says on stderr why not, when CUDA cannot be built here
        if line="$("$PY" scripts/aihwkit_flavour.py --want 1)"; then
            # leave the benchmark 4 minutes, and a CPU build after a failure 2
            BUILD_SECONDS=$(($(left) - 360))
            if [ "$BUILD_SECONDS" -gt 60 ]; then
                phase "building aihwkit with CUDA ($line), for at most $BUILD_SECONDS s"
                build_aihwkit "$line" "$wheels" || {
                    phase "the CUDA build failed or ran out of time (the end of $VENV/aihwkit-build.log below)"
                    tail -5 "$VENV/aihwkit-build.log" >&2
                }
            else
                phase "no time left for a CUDA build"
            fi
        fi
    fi
    if built cuda || built cpu; then
        phase "aihwkit built here ($(cat "$VENV/aihwkit-flavour"))"
    else
        BUILD_SECONDS=$(($(left) - 120))
        phase "building aihwkit for the CPU against this torch (at most $BUILD_SECONDS s; torch tiles still run on cuda)"
        build_aihwkit cpu "$wheels" || {
            tail -20 "$VENV/aihwkit-build.log" >&2
            echo "gpu.sh: the aihwkit build failed (log: $VENV/aihwkit-build.log)" >&2
            exit 1
        }
    fi
    phase "aihwkit: $("$PY" -c 'from aihwkit.simulator.rpu_base import cuda; import aihwkit; print(aihwkit.__version__, "compiled with CUDA:", bool(cuda.is_compiled()))')"

    local budget="${BUDGET:-$(($(left) - 20))}"
    phase "benchmarks on $DEVICES, $budget s"
    "$PY" -m benchmarks.gpu --devices "$DEVICES" --budget "$budget" "${GPU_ARGS[@]}"
    phase "done"
}

case "$MODE" in
prepare) prepare ;;
self-test) self_test ;;
run) run_there ;;
esac

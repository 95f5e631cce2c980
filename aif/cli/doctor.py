"""``aif doctor``: check that this machine can run aif, and say how to fix what cannot.

Why this exists: the analog simulator (aihwkit) is a compiled extension linked
against one torch. Installed next to another torch it can import fine and then fail
deep inside a run ("Invalid weights dimensions", "weights must be a CPU tensor"), or
crash. So the doctor does not stop at imports: it runs a real tiny analog layer
(forward, backward, an analog SGD update, and an inference tile forward) in a child
process, so that even a crash of the compiled code becomes a report line instead of
killing the doctor.

Each check has a level:

* ``ok``   works;
* ``warn`` works with a limitation (no CUDA GPU, no CURVE, little disk space);
  aif still runs, so the CLI exits 0;
* ``fail`` something aif needs is broken; ``fix`` says what to run. The CLI exits 1.

``Check.ok`` is ``level != "fail"``, so callers may treat a warning as passing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aif.errors import StorageError
from aif.storage.local import LocalStorage

Level = Literal["ok", "warn", "fail"]

#: The aihwkit release aif is built and tested against (pinned in pyproject.toml).
AIHWKIT_VERSION = "1.2.0"
MIN_PYTHON, MIN_TORCH, MIN_PYZMQ, MIN_MSGPACK = (3, 11), (2, 1), (26, 0), (1, 0)
#: Below this much free space in the state directory the doctor warns.
LOW_DISK_BYTES = 2**30

#: Messages that mean "aihwkit was compiled against another torch".
ABI_SYMPTOMS = (
    "Invalid weights dimensions",
    "weights must be a CPU tensor",
    "rpu_base",
    "undefined symbol",
)

_PIP = f"{sys.executable} -m pip"
ABI_FIX = (
    f"rebuild aihwkit=={AIHWKIT_VERSION} from its sdist against the installed torch: re-run "
    "scripts/setup.sh, whose tile check fails and rebuilds it without pip's cached wheel "
    "(built against another torch), and without the torchvision requirement a plain "
    "pip install would bring back (docs/plugging-in-hardware.md)"
)
SETUP_FIX = "run scripts/setup.sh (idempotent): it installs torch, builds aihwkit and installs aif"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: Level
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        """False only for ``fail``: a warning does not make the doctor fail."""
        return self.level != "fail"


def run_checks(state_dir: Path | None = None, *, tile_timeout: float = 300.0) -> list[Check]:
    """Run every check, in report order; never raises (a crashing check is a ``fail``).

    ``state_dir``: also check that this directory can be created and written.
    """
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("torch", check_torch),
        ("aihwkit", check_aihwkit),
        ("analog tile", lambda: check_analog_tile(timeout=tile_timeout)),
        ("cuda", check_cuda),
        ("aihwkit cuda", check_aihwkit_cuda),
        ("pyzmq", check_zmq),
        ("msgpack", check_msgpack),
    ]
    if state_dir is not None:
        checks.append(("state dir", lambda: check_state_dir(state_dir)))
    return [guarded(name, check) for name, check in checks]


def has_failures(checks: Sequence[Check]) -> bool:
    """True when any check failed (the CLI's exit status 1)."""
    return any(not check.ok for check in checks)


def format_report(checks: Sequence[Check]) -> str:
    """Plain text: ``OK``/``WARN``/``FAIL``, name, detail; the fix indented beneath.

    Ends with a one-line summary. No colour, so it reads the same in a log file.
    """
    width = max((len(check.name) for check in checks), default=0)
    indent = " " * (6 + width + 2)
    lines: list[str] = []
    for check in checks:
        detail = check.detail.replace("\n", "\n" + indent)
        lines.append(f"{check.level.upper():<4}  {check.name:<{width}}  {detail}")
        if check.fix and check.level != "ok":
            lines.append(f"{'':6}fix: {check.fix}")
    counts = {level: sum(c.level == level for c in checks) for level in ("ok", "warn", "fail")}
    lines.append(
        f"{len(checks)} checks: {counts['ok']} ok, {counts['warn']} warning(s), "
        f"{counts['fail']} failed"
    )
    return "\n".join(lines)


def guarded(name: str, check: Callable[[], Check]) -> Check:
    """Run ``check``; an unexpected exception becomes a ``fail`` line, not a traceback."""
    try:
        return check()
    except Exception as exc:
        return Check(
            name,
            "fail",
            f"the check itself crashed: {type(exc).__name__}: {exc}",
            "run scripts/setup.sh; if this persists, report it with the output of 'aif doctor'",
        )


# -- the checks -----------------------------------------------------------------------


def check_python(version: Sequence[int] | None = None) -> Check:
    """Python >= 3.11 (aif uses tomllib, ``Self``, exception groups)."""
    if version is None:
        version = tuple(sys.version_info[:3])
    shown = ".".join(str(part) for part in version[:3])
    detail = f"{shown} ({sys.executable})"
    if tuple(version[:2]) < MIN_PYTHON:
        fix = "create the venv with Python 3.11+: python3.11 -m venv .venv && scripts/setup.sh"
        return Check("python", "fail", detail + " is too old; aif needs 3.11 or newer", fix)
    return Check("python", "ok", detail)


def check_torch() -> Check:
    """torch imports; its version and whether it is a CPU or a CUDA build."""
    try:
        import torch
    except ImportError as exc:
        return Check("torch", "fail", f"torch does not import: {exc}", SETUP_FIX)
    version = str(torch.__version__)
    cuda = torch.version.cuda
    build = f"CUDA {cuda} build" if cuda else "CPU build"
    if _version_tuple(version) < MIN_TORCH:
        return Check("torch", "fail", f"torch {version} ({build}) is older than 2.1", SETUP_FIX)
    return Check("torch", "ok", f"torch {version} ({build})")


def check_aihwkit() -> Check:
    """aihwkit imports and is the release aif is pinned to."""
    try:
        installed = importlib.metadata.version("aihwkit")
    except importlib.metadata.PackageNotFoundError:
        return Check("aihwkit", "fail", "aihwkit is not installed", SETUP_FIX)
    try:
        importlib.import_module("aihwkit")
    except ImportError as exc:
        detail = f"aihwkit {installed} is installed but does not import: {exc}"
        return Check("aihwkit", "fail", detail, ABI_FIX)
    if installed.split("+")[0] != AIHWKIT_VERSION:
        detail = f"aihwkit {installed} is installed; aif is tested with {AIHWKIT_VERSION}"
        return Check("aihwkit", "warn", detail, ABI_FIX)
    return Check("aihwkit", "ok", f"aihwkit {installed}")


#: Runs in a child process (python -c) so a crash in compiled code cannot take the
#: doctor down. Self-contained on purpose: it must not depend on aif importing.
_TILE_PROBE = textwrap.dedent(
    """
    import json

    def probe():
        import torch
        from aihwkit.nn import AnalogLinear
        from aihwkit.optim import AnalogSGD
        from aihwkit.simulator.configs import InferenceRPUConfig, SingleRPUConfig
        from aihwkit.simulator.configs.devices import ConstantStepDevice

        torch.manual_seed(0)
        x = torch.rand(8, 4)
        config = SingleRPUConfig(device=ConstantStepDevice())
        layer = AnalogLinear(4, 2, bias=True, rpu_config=config)
        optimizer = AnalogSGD(layer.parameters(), lr=0.1)
        optimizer.regroup_param_groups(layer)
        before = layer.get_weights()[0].clone()
        out = layer(x)
        if tuple(out.shape) != (8, 2):
            raise RuntimeError(f"training tile forward gave shape {tuple(out.shape)}, not (8, 2)")
        out.pow(2).sum().backward()
        optimizer.step()
        if torch.equal(before, layer.get_weights()[0]):
            raise RuntimeError("the analog SGD update did not change the tile weights")
        inference = AnalogLinear(4, 2, bias=False, rpu_config=InferenceRPUConfig()).eval()
        y = inference(x)
        if tuple(y.shape) != (8, 2) or not bool(torch.isfinite(y).all()):
            raise RuntimeError("inference tile forward gave a wrong shape or non-finite values")
        return (
            f"torch {torch.__version__}: SingleRPUConfig(ConstantStepDevice) forward, backward "
            "and AnalogSGD update; InferenceRPUConfig forward"
        )

    try:
        result = {"ok": True, "detail": probe()}
    except BaseException as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print("AIF-DOCTOR " + json.dumps(result), flush=True)
    """
)


def check_analog_tile(
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
) -> Check:
    """Run a real tiny analog layer in a child process; classify what goes wrong."""
    name = "analog tile"
    try:
        proc = subprocess.run(
            [python, "-c", _TILE_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check(
            name,
            "fail",
            f"the analog tile probe did not finish within {timeout:.0f} s",
            "check that no other process pins the CPUs, then " + ABI_FIX,
        )
    except OSError as exc:
        return Check(name, "fail", f"cannot start {python}: {exc.strerror or exc}", SETUP_FIX)
    result = _probe_result(proc.stdout)
    if result is not None and result.get("ok") is True:
        return Check(name, "ok", str(result.get("detail", "")))
    if result is not None:
        return tile_failure(str(result.get("error", "unknown error")))
    tail = _tail(proc.stderr)
    if proc.returncode < 0:
        error = f"the probe process was killed by {_signal_name(-proc.returncode)}"
        return tile_failure(error + (f"; stderr: {tail}" if tail else ""), crashed=True)
    return tile_failure(f"the probe process exited with status {proc.returncode}: {tail}")


def tile_failure(error: str, *, crashed: bool = False) -> Check:
    """The ``analog tile`` failure for ``error``, with the fix its symptom calls for.

    A crash (a signal) of the compiled code is treated like the known ABI symptoms.
    """
    name = "analog tile"
    if error.startswith("ModuleNotFoundError") and "rpu_base" not in error:
        return Check(name, "fail", f"the simulator does not import: {error}", SETUP_FIX)
    if crashed or any(symptom in error for symptom in ABI_SYMPTOMS):
        return Check(
            name,
            "fail",
            f"the compiled aihwkit simulator does not work with this torch ({error})",
            ABI_FIX,
        )
    return Check(
        name,
        "fail",
        f"a tiny analog layer failed: {error}",
        ABI_FIX + "; if it still fails, report this error with the output of 'aif doctor'",
    )


def check_cuda() -> Check:
    """Whether torch sees a CUDA GPU. Absence is a warning: everything runs on CPU."""
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build of torch"
        return Check(
            "cuda",
            "warn",
            f"no CUDA GPU available ({build}); simulations run on the CPU",
            "for GPU runs: a machine with an NVIDIA GPU, a CUDA build of torch, and aihwkit "
            "rebuilt with USE_CUDA=ON",
        )
    name = torch.cuda.get_device_name(0)
    count = torch.cuda.device_count()
    return Check("cuda", "ok", f"{count} GPU(s), cuda:0 is {name} (CUDA {torch.version.cuda})")


def check_aihwkit_cuda() -> Check:
    """Whether aihwkit's simulator was compiled with CUDA, and whether that matters here."""
    import torch

    try:
        from aihwkit.simulator import rpu_base
    except ImportError as exc:
        return Check("aihwkit cuda", "fail", f"aihwkit's rpu_base does not import: {exc}", ABI_FIX)
    compiled = bool(rpu_base.cuda.is_compiled())
    gpu = torch.cuda.is_available()
    if compiled and gpu:
        return Check("aihwkit cuda", "ok", "compiled with CUDA; analog tiles can run on the GPU")
    if compiled:
        detail = "compiled with CUDA, but torch sees no GPU; tiles run on CPU"
        return Check("aihwkit cuda", "warn", detail)
    if gpu:
        return Check(
            "aihwkit cuda",
            "warn",
            "compiled without CUDA although a GPU is available; analog tiles run on the CPU",
            f"USE_CUDA=ON {_PIP} install --no-build-isolation --no-deps --force-reinstall "
            f"--no-cache-dir aihwkit=={AIHWKIT_VERSION} (needs the CUDA toolkit, nvcc on PATH)",
        )
    return Check("aihwkit cuda", "ok", "compiled for CPU only (no GPU here to use)")


def check_zmq() -> Check:
    """pyzmq and libzmq versions, and CURVE (needed by the Secure profile's channels)."""
    fix = f"{_PIP} install 'pyzmq>=26'"
    try:
        import zmq
    except ImportError as exc:
        return Check("pyzmq", "fail", f"pyzmq does not import: {exc}", fix)
    pyzmq, libzmq = zmq.pyzmq_version(), zmq.zmq_version()
    detail = f"pyzmq {pyzmq}, libzmq {libzmq}"
    if _version_tuple(pyzmq) < MIN_PYZMQ:
        return Check("pyzmq", "fail", detail + "; aif needs pyzmq 26+", fix)
    if not zmq.has("curve"):
        return Check(
            "pyzmq",
            "warn",
            detail + ", no CURVE: Secure-profile channels cannot be encrypted",
            f"{_PIP} install --force-reinstall --only-binary=pyzmq 'pyzmq>=26' (its wheels "
            "bundle a libzmq built with CURVE; a system libzmq needs libsodium)",
        )
    return Check("pyzmq", "ok", detail + ", CURVE available")


def check_msgpack() -> Check:
    """msgpack imports, is 1.0+, and uses its C extension (the pure-Python one is slow)."""
    fix = f"{_PIP} install 'msgpack>=1.0'"
    try:
        import msgpack
    except ImportError as exc:
        return Check("msgpack", "fail", f"msgpack does not import: {exc}", fix)
    version = ".".join(str(part) for part in msgpack.version)
    if tuple(msgpack.version[:2]) < MIN_MSGPACK:
        return Check("msgpack", "fail", f"msgpack {version} is older than 1.0", fix)
    if msgpack.Packer.__module__.endswith("fallback"):
        return Check(
            "msgpack",
            "warn",
            f"msgpack {version} runs its pure-Python fallback (slow)",
            f"unset MSGPACK_PUREPYTHON, or {_PIP} install --force-reinstall msgpack",
        )
    return Check("msgpack", "ok", f"msgpack {version} (C extension)")


def check_state_dir(path: Path) -> Check:
    """The state directory can be created, written, read and cleaned (a real round trip)."""
    name = "state dir"
    path = Path(path).absolute()
    fix = (
        f"create it and make it writable for this user (mkdir -p {path}; check its owner "
        "and permissions), or point aif at another state directory"
    )
    store = LocalStorage(path)
    key = f"aif-doctor-probe-{os.getpid()}"
    try:
        store.put(key, b"probe")
        readable = store.get(key) == b"probe"
        store.delete(key)
    except StorageError as exc:
        return Check(name, "fail", f"{path} is not usable: {exc}", fix)
    if not readable:
        return Check(name, "fail", f"{path}: a probe written there read back differently", fix)
    free = shutil.disk_usage(path).free
    detail = f"{path} is writable, {free / 2**30:.1f} GiB free"
    if free < LOW_DISK_BYTES:
        return Check(name, "warn", detail, "free some space: checkpoints and datasets need room")
    return Check(name, "ok", detail)


# -- helpers --------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``; stops at the first non-numeric part."""
    parts: list[int] = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _probe_result(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("AIF-DOCTOR "):
            try:
                value = json.loads(line.removeprefix("AIF-DOCTOR "))
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])

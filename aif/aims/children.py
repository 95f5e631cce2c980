"""Child processes that never outlive the process that started them.

A controller (or an AIM) that starts helper processes can be killed outright
(``kill -9``, the OOM killer), and then nothing of its own runs to stop them: on
Linux the kernel can, if the child asks for it first. ``guarded_argv`` returns the
command line of a tiny launcher that asks for a parent-death signal
(``PR_SET_PDEATHSIG``, kept across ``exec``), gives up if its parent is already gone
(it died between the fork and the ``prctl``), then becomes ``python -m MODULE ARGS``.
The pid the parent sees is the module's own, since the launcher ``exec``'s into it.

The signal goes when the *thread* that started the child ends, so start guarded
children from the thread that lives as long as the process (the event loop's, as
``asyncio.create_subprocess_exec`` does). Elsewhere than Linux the launcher only runs
the module: there the child has to notice its parent is gone by itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

#: The launcher, run with ``python -c``. Its arguments: the parent's pid, the signal
#: number, the module, the module's arguments. A constant program: what reaches it
#: from outside is data in ``sys.argv``, never code.
PROGRAM: Final = (
    "import os, sys\n"
    "parent, death_signal, module = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, death_signal)  # PR_SET_PDEATHSIG\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', module, *sys.argv[4:]])\n"
)


def guarded_argv(
    module: str, args: Sequence[str], death_signal: signal.Signals = signal.SIGTERM
) -> list[str]:
    """The command that runs ``python -m module *args`` and ends it when this process dies.

    ``death_signal`` is what the child gets then: ``SIGTERM`` lets it clean up;
    ``SIGKILL`` ends it on the spot, for a child whose own goodbye would hide why it
    really ended.
    """
    return [sys.executable, "-c", PROGRAM, str(os.getpid()), str(int(death_signal)), module, *args]

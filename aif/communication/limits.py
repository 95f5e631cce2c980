"""Channel defaults, stated once: what a connection gets when its AIW says nothing.

A module of constants with no imports, so the workflow model, the controller's plan
and an AIM host all read the same numbers without loading ZeroMQ.
"""

from __future__ import annotations

from typing import Final

#: Records a channel buffers before its writer waits (the AIW's ``queue_size``).
DEFAULT_QUEUE_SIZE: Final = 1000
#: The largest ``queue_size`` an AIW may ask for.
MAX_QUEUE_SIZE: Final = 1_000_000
#: Largest message on a channel unless the connection says otherwise (256 MiB).
DEFAULT_MAX_MESSAGE_SIZE: Final = 256 * 2**20
#: Signals the high-priority lane buffers; they are two bytes each and never wait long.
HIGH_LANE_QUEUE: Final = 1000
#: Arrays of this many bytes or more cross an ipc channel through shared memory, not the
#: socket (``aif.communication.shm``); below it the copy through the socket is cheaper.
SHM_MIN_BYTES: Final = 2**20
#: Shared-memory segments one ipc writer keeps for reuse; when the reader holds them all,
#: the next large array goes through the socket.
SHM_SLOTS: Final = 8

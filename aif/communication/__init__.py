"""Communication: typed records on ZeroMQ channels, and events.

- ``types``, ``type_parser``, ``type_model``, ``type_compat``: the MPAI-AIF type
  grammar, one parser, values checked and ports compared.
- ``ports``: port specs and what an AIM receives (``Record``, ``Signal``, ``Stop``).
- ``codec`` and ``arrays``: the wire format (msgpack header and body, zero-copy
  tensor frames); ``channel``: a channel's two lanes (uint16 signals, records);
  ``limits``: channel defaults; ``addresses``: endpoints; ``socket_wait``: wake-ups;
  ``shm``: large arrays through shared memory on ipc channels (segments, their cleanup);
  ``frames``: length-prefixed msgpack maps on the pipes to aif's helper processes.
- ``events`` and ``event_payloads``: pub/sub events and their typed payloads.

May import: ``aif.security`` (CURVE on channels) and ``aif.errors``.
"""

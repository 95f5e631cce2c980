"""What runs one AIM for a controller: the AIM host, in any placement.

- ``host``: ``AIMHost``, the AIM's lifecycle over the AIM API (hello, setup, ready,
  wire, wired, start, done/failed, bye), the control channel's signals, teardown.
- ``lifecycle``: ``HostState`` and its table of legal moves, the request to leave,
  and how a host ended (what its ``bye`` says, its exit status).
- ``link``: ``ControllerLink``, the host's one AIM API socket to its controller
  (dial, send, heartbeat, wait for the next message, ``bye``); ``heartbeat``: the
  thread that owns that socket and sends the heartbeats, so a busy event loop does
  not stop them.
- ``runtime``: ``HostRuntime``, what the AIM sees of its host: storage, channels,
  peers, events; ``event_stream``: its inputs and signals merged into one stream.
- ``lifelines``: how a host notices it is on its own (its parent died, the
  controller's connection dropped, SIGINT/SIGTERM).
- ``serve``: a host on its own: ``serve_host`` (a fresh ZeroMQ context), ``main`` of
  ``python -m aif.host`` (``__main__``, the ``process`` placement's child), and the
  CURVE keys of a hand-started ``aif aim serve`` (``remote_curve``).
- ``warm``: a warm worker (``python -m aif.host warm``), a long-lived process that
  imports heavy modules once and hosts a fresh AIM per job for the daemon's pool
  (``aif.controller.launchers.warm``), and the frames the two exchange.
- ``ray_actor``: ``HostActor``, the Ray actor that runs the ``process`` child on a node
  of a Ray cluster (``placement: ray``; ``aif.controller.launchers.ray``).

The ``inproc`` placement runs ``AIMHost`` inside the controller (its launcher is the
one place the controller may import this package); the others run it through ``serve``.

May import: ``aif.aims``, ``aif.api``, ``aif.communication``, ``aif.storage``,
``aif.security``, ``aif.errors``; never ``aif.controller``, ``aif.daemon``,
``aif.workflow``, ``aif.store`` or ``aif.cli``.
"""

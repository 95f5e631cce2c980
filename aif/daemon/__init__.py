"""The controller daemon: the job service around one Controller (``aif controller start``).

- ``daemon``: the process (lock, ``controller.json``, signals, drain, secure profile).
- ``jobs``: submitted AIW instances through their attempts; ``outcomes``: what an
  attempt's end means (retry, requeue, fail), as one pure function.
- ``state`` and ``records``: the SQLite job store and the typed records it keeps
  (the same types ``aif.Client`` returns); ``event_log``: batched event writes.
- ``scheduler``: per-device queues and the instances that serve them; ``on_ray``: the
  daemon on a Ray cluster (``--ray``): instances from its resources, each job's heavy
  AIM as a Ray actor.
- ``server``: the User API over ZeroMQ; ``client``: ``aif.Client``, its Python client.
- ``peer_hosting``: hosting AIMs for other controllers (B's side of the C2C API).

May import: ``aif.controller`` and every layer below it; never ``aif.cli``.
``client`` and ``records`` import nothing of the daemon's running parts, so a CLI
call or a user script that only talks to a daemon stays light.
"""

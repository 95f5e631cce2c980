"""Launchers: the seam between the Controller and the place an AIM's host runs.

* ``protocol``: the interface (``Launcher``: launch, wait, terminate) and ``describe_exit``;
* ``local``: an asyncio task in the controller (``inproc``) or a supervised child
  process (``process``, ``python -m aif.host``);
* ``warm``: a pool of warm workers (preloaded ``python -m aif.host warm`` processes that
  host a fresh AIM per job) and the launcher that borrows one (the daemon's opted-in
  ``process`` AIMs);
* ``hand_started``: a host started by hand elsewhere (``remote``; ``aif aim serve``);
* ``peer``: a host that a peer controller starts for us over the C2C API (``peers:``);
* ``ray``: a host that Ray starts as an actor on a node of a Ray cluster with the AIM's
  resources (``placement: ray``); ``ray_cluster``: connecting to the cluster, its live
  nodes and their resources (``RayNode``), Ray imported only when used (``aif[ray]``);
* ``placement``: which of these an AIM's placement gets.

May import: ``aif.host`` (the inproc host; the warm worker's and the Ray actor's
classes), ``aif.api``, ``aif.communication``, ``aif.security``, ``aif.errors`` and
``aif.controller.plan``; never the daemon or the CLI.
"""

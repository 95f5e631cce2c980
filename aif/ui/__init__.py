"""The web Composer's server: a browser UI the controller daemon serves (``--ui``).

It is a client of the daemon's User API like the CLI, only in the daemon's own process:
its requests are the User API's (``aif.api.user``) answered by ``Daemon.handle``, so
there is no second store of truth and no second scheduler. It serves JSON and the
static page in ``static/`` (written for the browser); nothing from an experiment is
ever rendered as HTML here.

* ``server``: the aiohttp application, its start and stop in the daemon's loop, the
  ``ui.url`` file, and ``ui_service`` that ``aif controller start --ui`` hands the daemon.
* ``auth``: the token, its cookies, the CSRF double-submit check, Host and Origin checks.
* ``tls``: the secure profile's HTTPS with client certificates: the UI's CA, the
  server certificate, and the client certificates issued and revoked.
* ``api``: the JSON handlers (``/api/...``) and how each reads and checks its request.
* ``compose``: the validator's review of an experiment, and the analog workflow an
  experiment from the UI runs in.
* ``views``: jobs as the page shows them (progress, best accuracy, metrics, results,
  the experiments a job ran, differences between jobs).
* ``events``: live events by server-sent events, woken by the controller's own events.
* ``templates``: the shipped experiments and aihwkit's examples, and the schema and
  aihwkit's names for the composer.

It may import ``aif.daemon`` (the daemon, its records), ``aif.api``, ``aif.workflow``,
``aif.inputs``, ``aif.security``'s key files and ``aif.aims.analog``'s spec and
validator; only ``aif.cli`` imports it, and only when ``--ui`` is given (aiohttp is not
loaded otherwise; ``aif keys ui-client`` loads ``tls`` alone).
"""

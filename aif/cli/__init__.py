"""The ``aif`` command: the User Agent of the MPAI-AIF reference model.

- ``main``: the parser and the workflow commands (doctor, validate, check, export,
  run, aim serve, chip emulate); ``common``: exit codes, the console, tables, JSON,
  and how a command reaches a daemon, defined once.
- ``daemon`` (controller start|stop|status) and ``jobs`` (submit, ps, status, logs,
  suspend, resume, cancel, aims); ``keys``, ``store``, ``attest``.
- ``progress``: the live run display; ``doctor``: is this machine ready?

Every heavy module is imported inside the command that needs it, so ``aif --version``
and the daemon's commands answer at once. May import anything below it.
"""

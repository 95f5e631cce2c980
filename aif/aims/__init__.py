"""What an AIM author touches: the SDK and the AIMs that ship with aif.

- ``base``: ``AIM``, the base class (ports, params, events, send, storage, results).
- ``metadata``: an AIM's MPAI-AIF JSON metadata; ``registry``: where AIM types come
  from (built-ins, class paths, ``aif.aims`` entry points, prefixed types such as the
  Store's ``store:``); ``preload``: heavy imports an AIM declares for warm processes.
- ``children``: helper processes that die with their parent (the chip emulator's).
- ``builtin``: source, collect, relay, tensor-source, checksum; ``record_file``: the
  ``record-file`` sink that keeps a run's records (JSON lines, arrays in ``.npz``).
- ``catalog``: what an AIM type declares (ports, params, queues, capabilities, origin),
  for ``aif aim list`` / ``show`` and the generated ``docs/aims.md``.
- ``analog/``: the analog AIMs (experiments, validator, simulator, reporter, digits,
  the IMC chip).

May import: ``aif.api``, ``aif.communication``, ``aif.storage``, ``aif.security``,
``aif.errors``; never the host that runs an AIM, nor anything above it.
"""

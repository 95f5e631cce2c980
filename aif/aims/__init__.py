"""What an AIM author touches: the SDK and the AIMs that ship with aif.

- ``base``: ``AIM``, the base class (ports, params, events, send, storage, results).
- ``metadata``: an AIM's MPAI-AIF JSON metadata; ``registry``: where AIM types come
  from (built-ins, class paths, ``aif.aims`` entry points, prefixed types such as the
  Store's ``store:``); ``preload``: heavy imports an AIM declares for warm processes.
- ``children``: helper processes that die with their parent (the chip emulator's).
- ``builtin``: source, collect, relay, tensor-source, checksum.
- ``analog/``: the analog AIMs (experiments, validator, simulator, reporter, digits,
  the IMC chip).

May import: ``aif.api``, ``aif.communication``, ``aif.storage``, ``aif.security``,
``aif.errors``; never the host that runs an AIM, nor anything above it.
"""

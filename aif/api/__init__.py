"""The wire vocabularies that both ends speak, one module per MPAI-AIF API.

- ``aim``: the AIM API (``MPAI_AIFM_*``) between an AIM host and the controller: hello,
  setup (with the secure profile's storage grant and channel keys, and their encoding),
  ready, wire, start, heartbeats, events, done/failed, bye; and the one decoder (size
  check, msgpack, field-by-field errors) that both APIs use.
- ``user``: the User API (``MPAI_AIFU_*``) between a client (``aif.Client``, the CLI) and
  the daemon, and the Controller-to-Controller API (``peer.*``) between daemons.

The vocabulary lives here, below both sides, so the host need not climb into the
controller to read its own messages (STYLE.md, lesson 15).

May import: ``aif.errors`` only (and pydantic, msgpack).
"""

"""The secure profile's building blocks.

- ``aead``: the AEAD algorithms aif uses, and one-shot sealed blobs.
- ``stream`` / ``stream_reader``: the chunked STREAM format for big objects, writing it
  and reading it back (whole, or seekable and decrypted on demand).
- ``keys``: this installation's identity (Ed25519, X25519, CURVE) and ``KeyRing``, the
  entry point to it and to the trusted keys; re-exports the key texts and ``TrustedKey``.
- ``key_formats``: the one text form of each kind of public key, and its parser.
- ``key_files``: owner-only, atomically written files under ``STATE_DIR/keys``.
- ``trust``: the trusted keys (``trusted.json``), CURVE keys bound to server endpoints.
- ``exchange``: per-scope storage keys derived by X25519 + HKDF, their rotation, and the
  storage-use lock that keeps a rotation from running under a live controller.
- ``curve``: CURVE encryption and client allow-lists for ZeroMQ sockets.

Secure storage itself is ``aif.storage.secure``; the ``aif keys`` commands are
``aif.cli.keys``. The whole design, file formats included, is in ``docs/security.md``.
"""

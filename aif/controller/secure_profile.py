"""What the secure profile adds to a controller's runs: identity, storage keys, checks.

A workflow with ``profile: secure`` runs like any other, plus:

* its AIMs' storage is encrypted. The controller derives each AIM's storage key and
  the Global Storage key from its own X25519 key (``aif.security.exchange``) and
  hands each host only the keys of its own AIM and of Global Storage, in ``Setup``;
* its tcp channels are CURVE-encrypted (the run's ``ChannelKeys``, see ``wiring``);
* its AIMs from a Store must be signed by a trusted publisher (``aif.store``).

The controller's identity (``aif keys init``) is loaded once, on the first secure run,
so a controller that never runs one never asks for a passphrase.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aif.aims.registry import loaded_types
from aif.api import aim as aim_api
from aif.errors import ConfigError
from aif.workflow import ResolvedWorkflow

if TYPE_CHECKING:
    from aif.security.curve import ControllerCurve
    from aif.security.exchange import StorageInUse, StorageKeys
    from aif.security.keys import Identity

#: The storage scope of Global Storage; an AIM's own is ``aim/<name>``.
GLOBAL_SCOPE = "global"


def aim_scope(aim: str) -> str:
    """The storage scope of AIM ``aim``'s own storage."""
    return f"aim/{aim}"


def secure_keys(state_dir: Path, passphrase: str | None = None) -> tuple[Identity, ControllerCurve]:
    """The keys a controller on ``state_dir`` needs to serve the secure profile over tcp.

    Its identity (``aif keys init``; a protected one is opened with ``passphrase``,
    else ``$AIF_PASSPHRASE``, else a prompt on a tty) and its CURVE side (its pair, the
    clients it trusts, the keys it trusts for peers). Storage keys are derived from
    the identity on the first secure run (:class:`SecureProfile`). ``aif run``, the
    daemon and ``Controller.with_identity`` all compose them here.
    """
    from aif.security.curve import load_controller_curve
    from aif.security.keys import KeyRing

    identity = KeyRing(state_dir).identity(passphrase)
    return identity, load_controller_curve(state_dir, identity)


class SecureProfile:
    """The secure profile's side of one controller: its identity, the storage keys it
    derives, and the channel keys of each secure run it has live."""

    def __init__(self, state_dir: Path, identity: Identity | None = None) -> None:
        self.state_dir = state_dir
        self._identity = identity
        self._storage_keys: StorageKeys | None = None
        # Held (shared) while this controller may hand out storage keys, so that
        # `aif keys rotate` never re-encrypts under a live run.
        self._in_use: StorageInUse | None = None
        #: The channel keys of each live secure run, by run id.
        self._runs: dict[str, aim_api.ChannelKeys] = {}

    def begin(self, run_id: str) -> None:
        """A secure run starts: make its tcp channels' key pair."""
        from aif.controller.wiring import new_channel_keys

        self._runs[run_id] = new_channel_keys(run_id)

    def end(self, run_id: str) -> None:
        """The run is reaped: forget its keys."""
        self._runs.pop(run_id, None)

    def channel_keys(self, run_id: str) -> aim_api.ChannelKeys | None:
        """The run's channel keys (None: not a secure run)."""
        return self._runs.get(run_id)

    def storage_for(self, run_id: str, aim: str) -> aim_api.StorageGrant | None:
        """The storage keys AIM ``aim`` of the run gets (None: not a secure run)."""
        return self.storage_grant(aim) if run_id in self._runs else None

    def close(self) -> None:
        """Let go of the storage-use lock (the controller's cleanup calls this)."""
        if self._in_use is not None:
            self._in_use.release()

    def _hold_storage(self) -> None:
        """Take the storage-use lock (refused, saying so, while `aif keys rotate` runs)."""
        if self._in_use is None:
            from aif.security.exchange import StorageInUse

            self._in_use = StorageInUse(self.state_dir)
        self._in_use.acquire()

    @property
    def identity(self) -> Identity:
        """The controller's identity, loaded on first use (a passphrase may be asked)."""
        if self._identity is None:
            from aif.security.keys import KeyRing

            self._identity = KeyRing(self.state_dir).identity()
        return self._identity

    def check(self, resolved: ResolvedWorkflow, *, curve_api: bool) -> None:
        """Refuse a secure workflow this controller cannot run as the profile requires.

        Storage keys travel to each host on the AIM API. Inside one host (inproc, ipc)
        that is as safe as the machine; to a remote host over tcp only when the AIM
        API itself is CURVE-encrypted.
        """
        on_ray = sorted(n for n, a in resolved.workflow.aims.items() if a.placement == "ray")
        if on_ray:
            raise ConfigError(
                f"workflow {resolved.name!r} has profile: secure and AIMs placed on Ray "
                f"({', '.join(on_ray)}), whose hosts Ray starts without a key this controller "
                "trusts; place them process or remote (with peers), or run the workflow "
                "in the basic profile"
            )
        remote = sorted(n for n, a in resolved.workflow.aims.items() if a.placement == "remote")
        if remote and not curve_api:
            raise ConfigError(
                f"workflow {resolved.name!r} has profile: secure and remote AIMs "
                f"({', '.join(remote)}), but this controller's tcp AIM API is not "
                "CURVE-encrypted, so their storage keys would cross the network in the "
                "clear; run it on a daemon started with `aif controller start --profile "
                "secure` (or through `aif run`, which encrypts for a secure workflow)"
            )
        self.identity  # noqa: B018 (load it now: a missing identity fails before any AIM starts)
        self._hold_storage()

    def attest(self, nonce: str, profile: str) -> dict[str, Any]:
        """A report, signed with the identity, of this controller and every AIM it loaded."""
        from aif.security.attestation import LoadedAIM, build_report, class_digest
        from aif.version import __version__

        loaded = [
            LoadedAIM(
                type=type_text,
                cls=entry.cls.class_path(),
                source=entry.source,
                digest=entry.digest or class_digest(entry.cls),
            )
            for type_text, entry in loaded_types().items()
        ]
        return build_report(
            self.identity, version=__version__, profile=profile, aims=loaded, nonce=nonce
        )

    def storage_grant(self, aim: str) -> aim_api.StorageGrant:
        """The keys AIM ``aim`` gets: its own storage's and Global Storage's."""
        if self._storage_keys is None:
            from aif.security.exchange import StorageKeys

            self._hold_storage()
            self._storage_keys = StorageKeys(self.state_dir, self.identity)
        keys = self._storage_keys
        return aim_api.StorageGrant.of(keys.keys_for(aim_scope(aim)), keys.keys_for(GLOBAL_SCOPE))

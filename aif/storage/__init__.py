"""Global Storage and AIM Storage: key -> bytes stores (see ``base`` for the key rules).

- ``base``: the ``Storage`` interface and its key rules; ``local``: plain files under
  the state directory (the basic profile); ``secure``: every object encrypted (the
  secure profile, ``aif.security``); ``paths``: where a controller keeps its state.

Public: the names in ``__all__`` (the secure ones imported on first use). May import:
``aif.security`` and ``aif.errors``.
"""

import typing

from aif import lazy_exports as _lazy
from aif.storage.base import KEY_RULE, Storage, validate_key, validate_segment
from aif.storage.local import LocalStorage, aim_storage, global_storage

if typing.TYPE_CHECKING:
    from aif.storage.secure import (
        ObjectInfo,
        SecureStorage,
        secure_aim_storage,
        secure_global_storage,
    )

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "ObjectInfo": "aif.storage.secure",
        "SecureStorage": "aif.storage.secure",
        "secure_aim_storage": "aif.storage.secure",
        "secure_global_storage": "aif.storage.secure",
    },
)

__all__ = [
    "KEY_RULE",
    "LocalStorage",
    "ObjectInfo",
    "SecureStorage",
    "Storage",
    "aim_storage",
    "global_storage",
    "secure_aim_storage",
    "secure_global_storage",
    "validate_key",
    "validate_segment",
]

"""Global Storage and AIM Storage: key -> bytes stores (see ``base`` for the key rules)."""

from aif.storage.base import KEY_RULE, Storage, validate_key, validate_segment
from aif.storage.local import LocalStorage, aim_storage, global_storage

__all__ = [
    "KEY_RULE",
    "LocalStorage",
    "Storage",
    "aim_storage",
    "global_storage",
    "validate_key",
    "validate_segment",
]

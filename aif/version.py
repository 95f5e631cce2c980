"""aif's version, in a module of its own so that any layer may read it without loading
the public API (``aif/__init__.py`` imports the whole house)."""

__version__ = "0.1.0"

"""``python -m aif``: the ``aif`` command (how a detached daemon starts itself)."""

from aif.cli.main import program

program()

"""``python -m aif``: the ``aif`` command (how a detached daemon starts itself)."""

import sys

from aif.cli.main import main

sys.exit(main())

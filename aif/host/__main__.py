"""``python -m aif.aims``: run one AIM host (the ``process`` placement's child)."""

import sys

from aif.host.host import main

sys.exit(main())

"""``python -m aif.host``: run one AIM host (the ``process`` placement's child)."""

import sys

from aif.host.serve import main

sys.exit(main())

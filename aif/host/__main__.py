"""``python -m aif.host``: run one AIM host (the ``process`` placement's child).

The host has said goodbye and closed its storage and channels when ``main`` returns;
the process then ends without the interpreter's teardown (:mod:`aif.fast_exit`), which
with torch loaded would keep the controller waiting to reap it for most of a second.
"""

from aif.fast_exit import exit_now
from aif.host.serve import main

exit_now(main())

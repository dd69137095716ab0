"""``python -m bluelm_cpp.server``: see :mod:`bluelm_cpp.server`."""

import sys

from . import main

sys.exit(main())

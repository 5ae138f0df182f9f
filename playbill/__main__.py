"""`python -m playbill`: the same command line as `playbill`."""

import sys

from playbill.cli import main

sys.exit(main())

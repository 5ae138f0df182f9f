import sys

from playbill.cli import main

sys.exit(main())

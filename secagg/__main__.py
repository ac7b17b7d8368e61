"""`python -m secagg` runs the `secagg` command."""

import sys

from secagg.cli import main

sys.exit(main())

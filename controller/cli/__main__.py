"""`python -m controller.cli`: the same as cemsctl."""

import sys

from controller.cli import main

sys.exit(main())

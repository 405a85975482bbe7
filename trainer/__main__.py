"""``python -m trainer``: the command line (trainer/cli.py)."""

import sys

from trainer.cli import main

sys.exit(main())

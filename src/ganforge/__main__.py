"""``python -m ganforge`` (and ``torchrun -m ganforge``) runs the command line."""
import sys

from ganforge.cli import main

sys.exit(main())

"""`python -m strata ...` is the `strata` command (`torchrun -m strata train ...`)."""

import sys

from strata.cli import main

sys.exit(main())

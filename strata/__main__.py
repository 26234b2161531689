"""`python -m strata ...` is the `strata` command (`torchrun -m strata train ...`)."""

import sys

from strata.cli import main

if __name__ == "__main__":
    sys.exit(main())

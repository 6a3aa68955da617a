"""`python -m longrecipe` (what `torchrun -m longrecipe train ...` runs)."""

import sys

from longrecipe.recipes.cli import main

sys.exit(main())

"""`python -m lookum_jax.cli ...` is `lookum ...`."""

import sys

from lookum_jax.cli import main

sys.exit(main())

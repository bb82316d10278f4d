"""`lookum summarize` under its old name (older notes cite it); same flags."""

import sys

from lookum_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["summarize", *sys.argv[1:]]))

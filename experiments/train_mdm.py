"""`lookum train mdm` under its old name (model cards cite it); same flags."""

import sys

from lookum_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["train", "mdm", *sys.argv[1:]]))

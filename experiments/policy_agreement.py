"""How far a policy's sampled decoding departs from its deterministic one, per chain, read from
settings that `experiments/chain_fronts.py` stored (no decoding). A policy whose Bernoulli
probabilities have collapsed to 0 or 1 decodes the same way sampled as deterministic: its
chains spend the same NFE and end equally right under every seed.

  python experiments/policy_agreement.py experiments/results/chain/fronts/full/settings \
      --policy chain --policy nomix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def records(path: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
  """Per seed: (seed, NFE [N], correct [N]) of a stored setting."""
  if not path.is_file():
    raise SystemExit(f"{path} does not exist: evaluate it first with experiments/chain_fronts.py "
                     f"--policy NAME=DIR.")
  stored = json.loads(path.read_text())["results"]
  return [(r["seed"], np.array([x["nfe"] for x in r["records"]], float),
           np.array([x["correct"] for x in r["records"]], float)) for r in stored]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("settings", help="a chain_fronts output's settings/ directory")
  parser.add_argument("--policy", action="append", required=True,
                      help="a policy's label in chain_fronts (--policy LABEL=DIR); repeatable")
  args = parser.parse_args(argv)
  root = Path(args.settings)
  print("| policy | seed | chains with the deterministic NFE | chains equally right | "
        "mean abs NFE difference |")
  print("|---|---|---|---|---|")
  for name in args.policy:
    [(_, det_nfe, det_ok)] = records(root / f"policy_{name}_deterministic.json")
    for seed, nfe, ok in records(root / f"policy_{name}_sample.json"):
      if nfe.shape != det_nfe.shape:
        raise SystemExit(f"policy {name}: the sampled and deterministic settings hold "
                         f"{nfe.size} and {det_nfe.size} chains; evaluate both with one --limit.")
      print(f"| {name} | {seed} | {100 * np.mean(nfe == det_nfe):.1f}% | "
            f"{100 * np.mean(ok == det_ok):.1f}% | {np.mean(np.abs(nfe - det_nfe)):.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())

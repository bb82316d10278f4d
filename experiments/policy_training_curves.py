"""Training curves of policy runs: reward, accuracy and NFE of the rollouts against step.

Reads each run's `metrics.jsonl` (written by `lookum train policy`), smooths with a
moving average, and writes one PNG with a column per metric plus a CSV of the smoothed values.

    python experiments/policy_training_curves.py --run multiplicative=runs/policy/full/alpha1 \
        --run additive=runs/policy/additive --out experiments/results/policy_additive
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("reward", "accuracy", "nfe")


def read_metrics(run_dir: str | Path) -> list[dict]:
  path = Path(run_dir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average (shorter at the start)."""
  cumsum = np.cumsum(np.insert(values, 0, 0.0))
  out = np.empty_like(values, dtype=float)
  for i in range(len(values)):
    lo = max(0, i + 1 - window)
    out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
  parser.add_argument("--metrics", nargs="+", default=list(METRICS),
                      help="metrics.jsonl keys, e.g. reward accuracy nfe policy_accuracy")
  parser.add_argument("--window", type=int, default=10)
  parser.add_argument("--out", required=True)
  parser.add_argument("--title", default="")
  args = parser.parse_args(argv)

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  # The label is everything before the last "=", so a label may hold one ("alpha = 1=DIR").
  runs = [item.rpartition("=")[::2] for item in args.run]
  for item, (label, run_dir) in zip(args.run, runs, strict=True):
    if not label or not (Path(run_dir) / "metrics.jsonl").is_file():
      parser.error(f"--run {item!r}: give LABEL=DIR, DIR a policy run directory holding "
                   f"metrics.jsonl.")
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, len(args.metrics), figsize=(4.2 * len(args.metrics), 3.6),
                           dpi=120)
  axes = np.atleast_1d(axes)
  rows = []
  for i, (label, run_dir) in enumerate(runs):
    records = read_metrics(run_dir)
    steps = np.array([r["step"] for r in records])
    for ax, key in zip(axes, args.metrics, strict=True):
      if key not in records[0]:
        continue
      values = smooth(np.array([r[key] for r in records], float), args.window)
      ax.plot(steps, values, color=f"C{i}", label=label)
      for step, value in zip(steps, values, strict=True):
        rows.append((label, key, int(step), f"{value:.5f}"))
  for ax, key in zip(axes, args.metrics, strict=True):
    ax.set_xlabel("train step")
    ax.set_title(f"{key} (moving average of {args.window})", fontsize=9)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  if args.title:
    fig.suptitle(args.title, fontsize=10)
  fig.tight_layout()
  fig.savefig(out / "training_curves.png")
  plt.close(fig)
  table = io.StringIO()  # csv quotes a label holding a comma
  writer = csv.writer(table, lineterminator="\n")
  writer.writerow(("run", "metric", "step", "value"))
  writer.writerows(rows)
  (out / "training_curves.csv").write_text(table.getvalue())
  print(f"wrote {out}/training_curves.png and training_curves.csv")
  return 0


if __name__ == "__main__":
  sys.exit(main())

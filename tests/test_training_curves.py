"""`experiments/policy_training_curves.py` writes a CSV that reads back: a run label holding a
comma or an "=" survives, and every value is the trailing moving average of its metric."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


def _load_curves():
  path = Path(__file__).resolve().parents[1] / "experiments" / "policy_training_curves.py"
  spec = importlib.util.spec_from_file_location("policy_training_curves", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def _write_run(directory: Path, rewards: list[float], nfes: list[float]) -> Path:
  directory.mkdir(parents=True)
  lines = [json.dumps({"step": i + 1, "reward": r, "nfe": n})
           for i, (r, n) in enumerate(zip(rewards, nfes, strict=True))]
  (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  return directory


def _moving_average(values: list[float], window: int) -> list[float]:
  return [float(np.mean(values[max(0, i + 1 - window):i + 1])) for i in range(len(values))]


def test_csv_reads_back_with_commas_and_equals_in_labels(tmp_path):
  curves = _load_curves()
  a = _write_run(tmp_path / "a", [0.0, 1.0, 0.5, 0.25, 1.0], [60.0, 40.0, 30.0, 20.0, 25.0])
  b = _write_run(tmp_path / "b", [0.2, 0.4, 0.6], [10.0, 12.0, 14.0])
  runs = {"semi-AR (blocks of 32, dual cache)": a, "alpha = 3, seed 1": b}
  out = tmp_path / "out"
  assert curves.main([*[f"--run={label}={d}" for label, d in runs.items()],
                      "--metrics", "reward", "nfe", "--window", "2", "--out", str(out)]) == 0

  with open(out / "training_curves.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert {r["run"] for r in rows} == set(runs)
  assert len(rows) == 2 * 5 + 2 * 3
  for label, directory in runs.items():
    records = curves.read_metrics(directory)
    for metric in ("reward", "nfe"):
      got = [float(r["value"]) for r in rows if r["run"] == label and r["metric"] == metric]
      want = _moving_average([rec[metric] for rec in records], 2)
      assert got == pytest.approx(want, abs=1e-5)
      steps = [int(r["step"]) for r in rows if r["run"] == label and r["metric"] == metric]
      assert steps == [rec["step"] for rec in records]

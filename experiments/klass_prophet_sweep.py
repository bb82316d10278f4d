"""KLASS and Prophet against the confidence threshold on a toy lab, each swept over its main
parameter (issue 23's side-by-side, small).

    python experiments/klass_prophet_sweep.py --model toy-sudoku --limit 100 \
        --out experiments/results/klass_prophet_sudoku

KLASS sweeps its KL threshold at the authors' LLaDA confidence threshold (0.6, history 2);
Prophet (over one-token-a-step top-k confidence) scales its three staged gap thresholds
(7.5 / 5.0 / 2.5 at scale 1; `--reduce mean` averages the gaps). Every sampler decodes the
same problems with the same key, so rows are paired. Writes OUT/results.json, results.csv
and accuracy_vs_nfe.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

from lookum_jax.evaluation import evaluate, format_table
from lookum_jax.plotting import plot_accuracy_vs_nfe
from lookum_jax.sampling import LowConfidence, SamplerConfig, Threshold
from lookum_jax.sampling.strategies.klass import KLASS
from lookum_jax.sampling.strategies.prophet import Prophet
from lookum_jax.toylab import open_task_model


def line_up(gen_length: int, block_length: int, taus: list[float], kls: list[float],
            conf: float, scales: list[float], reduce: str = "min"
            ) -> list[tuple[str, SamplerConfig]]:
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  out = [("low_confidence 1/step", base)]
  out += [(f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau))) for tau in taus]
  out += [(f"klass conf={conf:g} kl={kl:g}", base.replace(
      strategy=KLASS(conf_threshold=conf, kl_threshold=kl))) for kl in kls]
  out += [(f"prophet {reduce} x{scale:g}", base.replace(strategy=Prophet(
      base=LowConfidence(), early=7.5 * scale, mid=5.0 * scale, late=2.5 * scale,
      reduce=reduce))) for scale in scales]
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=100)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--taus", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.97])
  parser.add_argument("--kls", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.2, 1.0])
  parser.add_argument("--conf", type=float, default=0.6)
  parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
  parser.add_argument("--reduce", choices=("min", "mean"), default="min",
                      help="how Prophet combines the remaining positions' gaps")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  opened = open_task_model(args.model, limit=args.limit)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = []
  print(format_table([]), flush=True)
  for label, config in line_up(opened.gen_length, opened.block_length, args.taus, args.kls,
                               args.conf, args.scales, args.reduce):
    result = evaluate(opened.model, opened.tokenizer, opened.task, opened.examples, config,
                      jax.random.key(args.seed), batch_size=args.batch_size, label=label,
                      progress=False)
    results.append(result)
    print(format_table([result]).splitlines()[-1], flush=True)
  (out / "results.json").write_text(json.dumps([r.summary() for r in results], indent=1,
                                               default=str))
  rows = ["sampler,accuracy,ci_low,ci_high,mean_nfe,wall_s,compile_s"]
  rows += [f"{r.label},{r.accuracy:.4f},{r.ci95[0]:.4f},{r.ci95[1]:.4f},{r.mean_nfe:.3f},"
           f"{r.wall_time_s:.2f},{r.compile_time_s:.2f}" for r in results]
  (out / "results.csv").write_text("\n".join(rows) + "\n")
  plot_accuracy_vs_nfe(results, out / "accuracy_vs_nfe.png",
                       title=f"{args.model}: {len(opened.examples)} problems")
  return 0


if __name__ == "__main__":
  sys.exit(main())

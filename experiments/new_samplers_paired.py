"""The field's newer samplers (KLASS, Prophet, PC-Sampler, DUS) beside the threshold and
entropy-bounded fronts, paired against one reference on the same problems and keys, with
wall time and tokens/s (issue 23, item 3).

    python experiments/new_samplers_paired.py --model toy-chain --limit 500 \
        --out experiments/results/new_samplers/toy-chain-500
    python experiments/new_samplers_paired.py --model toy-sudoku --limit 500 \
        --out experiments/results/new_samplers/toy-sudoku-500

The reference is LLaDA's setting: low-confidence, one token a step, full diffusion, no cache.
On toy-chain the other rows decode in blocks of 32 (`--block-length`) with the dual cache
(`--cache`), plus prefix-cache and vicinity-start controls; on toy-sudoku they keep the
model's block (full diffusion). Each setting is stored on its own, keyed on a fingerprint of
the whole sampler, the model's files, the problems, the seed and n (`lookum_jax.studies`):
a rerun, or a run with `--only`, reads finished settings back, so the slow reference runs
once. Writes OUT/results.md (accuracy, paired difference against the reference with its 95%
bootstrap interval, NFE, forward tokens, wall and decode time, tokens/s, speed-up), results.json
and accuracy_vs_nfe.png; the load average (`os.getloadavg`) before and after each fresh run is
kept in OUT/loads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from lookum_jax.evaluation import EvalResult
from lookum_jax.plotting import plot_accuracy_vs_nfe
from lookum_jax.sampling import EntropyBounded, LowConfidence, SamplerConfig, Threshold
from lookum_jax.sampling.strategies.dus import DUS
from lookum_jax.sampling.strategies.klass import KLASS
from lookum_jax.sampling.strategies.pc_sampler import PCSampler
from lookum_jax.sampling.strategies.prophet import Prophet
from lookum_jax.studies import (
  file_name,
  lab_identity,
  paired_bootstrap,
  read_setting,
  run_setting,
  setting_key,
)
from lookum_jax.toylab import open_task_model

REFERENCE = "reference: low_confidence 1/step, full diffusion, no cache"


def chain_line_up(gen: int, block: int, cache: str) -> list[tuple[str, SamplerConfig]]:
  """toy-chain: the reference, then the speed rows, then each family's front."""
  ref = SamplerConfig(gen_length=gen, block_length=gen, steps=gen, strategy=LowConfidence())
  base = SamplerConfig(gen_length=gen, block_length=block, steps=gen, cache=cache)
  blocks = gen // block
  rows = [(REFERENCE, ref)]
  rows += [(f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau)))
           for tau in (0.9, 0.97)]
  rows += [(f"threshold tau={tau:g} prefix", base.replace(cache="prefix",
                                                          strategy=Threshold(tau=tau)))
           for tau in (0.9, 0.97)]
  rows += [(f"threshold tau={tau:g} vicinity", base.replace(block_start="vicinity",
                                                           strategy=Threshold(tau=tau)))
           for tau in (0.97, 0.99)]
  rows += [(f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau)))
           for tau in (0.7, 0.99)]
  rows += [(f"threshold tau=0.97 block=64{start}", base.replace(
      block_length=64, block_start=start.strip() or "full", strategy=Threshold(tau=0.97)))
      for start in ("", " vicinity")]
  rows += [(f"entropy_bounded gamma={g:g}", base.replace(strategy=EntropyBounded(gamma=g)))
           for g in (0.01, 0.1, 1.0)]
  rows += [(f"pc_sampler decay=0.25 {k}/step", base.replace(
      steps=blocks * (block // k), strategy=PCSampler(decay=0.25))) for k in (2, 4, 8)]
  rows += [(f"klass conf=0.9 kl={kl:g}", base.replace(
      strategy=KLASS(conf_threshold=0.9, kl_threshold=kl))) for kl in (0.001, 0.01, 0.1)]
  rows += [(f"dus base=2 block={b}", base.replace(block_length=b, strategy=DUS(base=2)))
           for b in (32, 16, 8)]
  rows += [(f"prophet min x{s:g}", base.replace(strategy=Prophet(
      early=7.5 * s, mid=5.0 * s, late=2.5 * s))) for s in (0.5, 1.0, 2.0)]
  return rows


def sudoku_line_up(gen: int, block: int, cache: str) -> list[tuple[str, SamplerConfig]]:
  """toy-sudoku (full diffusion in the model's block): the reference, then each front."""
  base = SamplerConfig(gen_length=gen, block_length=block, steps=gen, cache=cache)
  rows = [(REFERENCE, SamplerConfig(gen_length=gen, block_length=gen, steps=gen,
                                    strategy=LowConfidence()))]
  rows += [(f"low_confidence {k}/step", base.replace(steps=gen // k)) for k in (2, 4)]
  rows += [(f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau)))
           for tau in (0.5, 0.7, 0.9, 0.97)]
  rows += [(f"entropy_bounded gamma={g:g}", base.replace(strategy=EntropyBounded(gamma=g)))
           for g in (0.01, 0.1, 1.0)]
  rows += [(f"klass conf=0.9 kl={kl:g}", base.replace(
      strategy=KLASS(conf_threshold=0.9, kl_threshold=kl))) for kl in (0.001, 0.01, 0.1, 1e9)]
  rows += [(f"prophet min x{s:g}", base.replace(strategy=Prophet(
      early=7.5 * s, mid=5.0 * s, late=2.5 * s))) for s in (0.25, 0.5, 1.0)]
  rows += [(f"pc_sampler decay={d:g} {k}/step", base.replace(
      steps=gen // k, strategy=PCSampler(decay=d))) for d in (0.0, 0.25) for k in (1, 2, 4)]
  rows += [(f"dus base=2 block={b}", base.replace(block_length=b, strategy=DUS(base=2)))
           for b in (16, 8, 4)]
  return rows


LINE_UPS = {"toy-chain": chain_line_up, "toy-sudoku": sudoku_line_up}


def paired_cell(result: EvalResult, baseline: EvalResult) -> str:
  """`result` - `baseline` in accuracy points over the same problems, with its 95% bootstrap
  interval."""
  diff, low, high = paired_bootstrap([x["correct"] for x in result.records],
                                     [x["correct"] for x in baseline.records])
  return f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def speed_table(results: dict[str, EvalResult], reference: str, gen: int,
                against: str | None = None) -> list[str]:
  """Markdown rows: accuracy, paired difference against `reference` (points, 95% bootstrap
  interval) and, if given, against the row `against`, NFE, forward tokens, wall and decode
  seconds, tokens/s and the speed-up."""
  ref = results[reference]

  def tokens_per_s(r: EvalResult) -> float:
    return r.n * gen / max(r.wall_time_s - r.compile_time_s, 1e-9)

  extra = f" vs {against} |" if against else ""
  rows = [f"| sampler | accuracy | vs reference (paired 95% CI) |{extra} NFE | forward tokens | "
          "wall s (compile s) | decode s | tokens/s | speed-up |",
          "|---|---|---|" + ("---|" if against else "") + "---|---|---|---|---|---|"]
  for label, r in results.items():
    vs = "-" if label == reference else paired_cell(r, ref)
    if against:
      vs += " | " + ("-" if label == against else paired_cell(r, results[against]))
    forward = np.mean([x["forward_tokens"] for x in r.records])
    decode = r.wall_time_s - r.compile_time_s
    rows.append(f"| {label} | {100 * r.accuracy:.1f}% | {vs} | {r.mean_nfe:.1f} | "
                f"{forward:.0f} | {r.wall_time_s:.1f} ({r.compile_time_s:.1f}) | {decode:.1f} | "
                f"{tokens_per_s(r):.0f} | {tokens_per_s(r) / tokens_per_s(ref):.1f}x |")
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="toy-chain", choices=sorted(LINE_UPS))
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--block-length", type=int,
                      help="the rows' block (not the reference's); default: 32 on toy-chain, "
                           "the model's on toy-sudoku")
  parser.add_argument("--cache", default=None, choices=("none", "prefix", "dual"),
                      help="the rows' cache; default: dual on toy-chain, none on toy-sudoku")
  parser.add_argument("--only", default=None,
                      help="a regular expression: run only the settings whose label matches "
                           "(the reference always runs); the tables cover what is stored")
  parser.add_argument("--against", default=None,
                      help="a row's label: add a column of paired differences against it")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  lab = open_task_model(args.model, limit=args.limit)
  chain = args.model == "toy-chain"
  block = args.block_length or (32 if chain else lab.block_length)
  cache = args.cache or ("dual" if chain else "none")
  out = Path(args.out)
  (out / "settings").mkdir(parents=True, exist_ok=True)
  loads_path = out / "loads.json"
  loads = json.loads(loads_path.read_text()) if loads_path.is_file() else {}
  identity = lab_identity(lab)
  results: dict[str, EvalResult] = {}
  for label, config in LINE_UPS[args.model](lab.gen_length, block, cache):
    path = out / "settings" / f"{file_name(label)}.json"
    key = setting_key(config, **identity, seeds=[args.seed], n=len(lab.examples))
    stored = read_setting(path, key) is not None
    if not stored and label != REFERENCE and args.only and not re.search(args.only, label):
      continue
    before = os.getloadavg()
    results[label] = run_setting(lab, config, label, [args.seed], path,
                                 batch_size=args.batch_size, identity=identity)[0]
    if not stored:
      loads[label] = {"before": [round(x, 2) for x in before],
                      "after": [round(x, 2) for x in os.getloadavg()]}
      loads_path.write_text(json.dumps(loads, indent=1))
    r = results[label]
    print(f"{label}: {r.accuracy:.3f} @ {r.mean_nfe:.1f} NFE, {r.wall_time_s:.1f} s "
          f"({'stored' if stored else 'ran'}; load {loads.get(label, {}).get('after')})",
          flush=True)
  header = (f"{args.model}: the first {len(lab.examples)} held-out problems, gen_length "
            f"{lab.gen_length}, temperature 0, seed {args.seed}, batch {args.batch_size}. "
            f"Reference: block {lab.gen_length}, no cache; other rows: block {block} (unless "
            f"named), cache {cache} (unless named). Paired differences are in points, "
            f"bootstrap over problems. Tokens/s = problems x gen_length / decode s (wall minus "
            f"compile). Load averages (1/5/15 min) per row: loads.json.\n\n")
  (out / "results.md").write_text(header + "\n".join(
      speed_table(results, REFERENCE, lab.gen_length, args.against)) + "\n")
  (out / "results.json").write_text(json.dumps(
      {label: {**r.summary(), "mean_forward_tokens": float(np.mean(
          [x["forward_tokens"] for x in r.records]))} for label, r in results.items()},
      indent=1, default=str))
  plot_accuracy_vs_nfe(list(results.values()), out / "accuracy_vs_nfe.png",
                       title=f"{args.model}: {len(lab.examples)} problems, paired")
  print((out / "results.md").read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Accuracy of KV-cached decoding against uncached decoding on a shipped toy model.

    python experiments/cache_accuracy.py --model toy-sudoku --limit 500 --block 8
    python experiments/cache_accuracy.py --model toy-chain --limit 200 --block 32
    python experiments/cache_accuracy.py --model toy-sudoku --limit 500 --block 8 \
        --refresh-sweep --thresholds 0.05 0.1 0.2 0.4

For each sampler (low_confidence at 1 and 2 tokens per step, threshold 0.9, LookUM K=2) and
each cache mode, the same held-out problems and keys; prints accuracy with its Wilson
interval, the paired difference to the uncached run (bootstrap 95% CI over problems), mean
NFE and forward tokens, and writes `results.json` under `--out`.

`--refresh-sweep` instead compares cache refresh schedules for one sampler (`--sampler`) under
one cache (`--cache`): never (Fast-dLLM), every 2 steps, every step, the adaptive refresh at
each `--thresholds` value (one compile for the sweep: the threshold is traced), and the
vicinity block start with and without the adaptive refresh; each row's paired difference is
against refresh-every-step.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from lookum_jax.evaluation import evaluate
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.studies import paired_bootstrap
from lookum_jax.toylab import open_task_model


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--block", type=int, help="block length (default: the model's)")
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--out", default="experiments/results/engine/cache_accuracy")
  parser.add_argument("--refresh-sweep", action="store_true",
                      help="compare refresh schedules instead (see the module docstring)")
  parser.add_argument("--sampler", default="low_confidence 1/step",
                      help="--refresh-sweep: the sampler (a name of the table's samplers)")
  parser.add_argument("--cache", default="dual", choices=["prefix", "dual"])
  parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
  parser.add_argument("--from-layer", type=int, default=0,
                      help="--refresh-sweep: the adaptive refresh's refresh_from_layer")
  parser.add_argument("--adaptive-only", action="store_true",
                      help="--refresh-sweep: only refresh-every-step and the adaptive rows")
  args = parser.parse_args(argv)
  lab = open_task_model(args.model, limit=args.limit)
  gen = lab.spec.gen_length
  block = args.block or lab.spec.block_length
  examples = lab.examples
  samplers = {
      "low_confidence 1/step": SamplerConfig(gen_length=gen, block_length=block, steps=gen),
      "low_confidence 2/step": SamplerConfig(gen_length=gen, block_length=block,
                                             steps=gen // 2),
      "threshold 0.9": SamplerConfig(gen_length=gen, block_length=block,
                                     strategy=Threshold(tau=0.9)),
      "lookum K=2 2/step": SamplerConfig(
          gen_length=gen, block_length=block, steps=gen // 2,
          strategy=parse_strategy("lookum", {"paths": 2, "verifier_scope": "block"})),
  }
  if args.refresh_sweep:
    refresh_sweep(args, lab, samplers[args.sampler])
    return
  rows = []
  print(f"{args.model}, {len(examples)} held-out problems, gen {gen}, block {block}")
  print("| sampler | cache | accuracy | 95% CI | vs none (paired 95% CI) | NFE | forward tokens |")
  print("|---|---|---|---|---|---|---|")
  for label, base in samplers.items():
    reference = None
    for cache in ("none", "prefix", "dual"):
      config = base.replace(cache=cache)
      result = evaluate(lab.model, lab.tokenizer, lab.task, examples, config,
                        jax.random.key(0), batch_size=args.batch_size, progress=False)
      correct = np.asarray([r["correct"] for r in result.records])
      if reference is None:
        reference = correct
      mean, low, high = paired_bootstrap(correct, reference)
      rows.append(dict(sampler=label, cache=cache, accuracy=result.accuracy,
                       ci95=result.ci95, diff=mean, diff_ci95=(low, high),
                       mean_nfe=result.mean_nfe,
                       forward_tokens=float(np.mean([r.get("forward_tokens", 0)
                                                     for r in result.records]))))
      diff = "-" if cache == "none" else f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
      print(f"| {label} | {cache} | {100 * result.accuracy:.1f}% | "
            f"[{100 * result.ci95[0]:.1f}, {100 * result.ci95[1]:.1f}] | {diff} | "
            f"{result.mean_nfe:.2f} | {rows[-1]['forward_tokens']:.0f} |", flush=True)
  os.makedirs(args.out, exist_ok=True)
  tmp = os.path.join(args.out, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"model": args.model, "limit": len(examples), "gen_length": gen,
               "block_length": block, "rows": rows}, f, indent=1)
  os.replace(tmp, os.path.join(args.out, "results.json"))


def run_config(lab, config, args) -> tuple[np.ndarray, dict]:
  """Per-problem correctness and the run's summary numbers."""
  start = time.perf_counter()
  result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, config,
                    jax.random.key(0), batch_size=args.batch_size, progress=False)
  seconds = time.perf_counter() - start
  correct = np.asarray([r["correct"] for r in result.records])
  tokens = float(np.mean([r.get("forward_tokens", 0) for r in result.records]))
  return correct, dict(accuracy=result.accuracy, ci95=result.ci95, mean_nfe=result.mean_nfe,
                       forward_tokens=tokens, seconds=seconds)


def refresh_sweep(args, lab, base: SamplerConfig) -> None:
  """Accuracy against forward tokens for each refresh schedule (module docstring)."""
  cached = base.replace(cache=args.cache)
  adaptive = cached.replace(cache_refresh="adaptive", refresh_from_layer=args.from_layer)
  schedules = {"none (uncached)": base, "never": cached,
               "every 2 steps": cached.replace(cache_refresh=2),
               "every step": cached.replace(cache_refresh=1)}
  suffix = f" (layers {args.from_layer}+)" if args.from_layer else ""
  for tau in args.thresholds:
    schedules[f"adaptive {tau:g}{suffix}"] = adaptive.replace(refresh_threshold=tau)
  if args.adaptive_only:
    schedules = {name: config for name, config in schedules.items()
                 if name == "every step" or name.startswith("adaptive")}
  else:
    schedules["vicinity start"] = cached.replace(block_start="vicinity")
  for tau in [] if args.adaptive_only else args.thresholds:
    schedules[f"vicinity start + adaptive {tau:g}{suffix}"] = adaptive.replace(
        refresh_threshold=tau, block_start="vicinity")
  print(f"{args.model}, {len(lab.examples)} held-out problems, {args.sampler}, gen "
        f"{base.gen_length}, block {base.block_length}, cache {args.cache}")
  print("| refresh | accuracy | 95% CI | vs every step (paired 95% CI) | NFE | forward tokens "
        "| tokens / every step's | s |")
  print("|---|---|---|---|---|---|---|---|")
  rows, every = [], None
  results = {name: run_config(lab, config, args) for name, config in
             sorted(schedules.items(), key=lambda kv: kv[0] != "every step")}
  every, every_row = results["every step"]
  for name in schedules:
    correct, row = results[name]
    mean, low, high = paired_bootstrap(correct, every)
    rows.append(dict(refresh=name, diff=mean, diff_ci95=(low, high), **row))
    diff = "-" if name == "every step" else (
        f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
    print(f"| {name} | {100 * row['accuracy']:.1f}% | [{100 * row['ci95'][0]:.1f}, "
          f"{100 * row['ci95'][1]:.1f}] | {diff} | {row['mean_nfe']:.2f} | "
          f"{row['forward_tokens']:.1f} | "
          f"{100 * row['forward_tokens'] / every_row['forward_tokens']:.0f}% | "
          f"{row['seconds']:.0f} |", flush=True)
  os.makedirs(args.out, exist_ok=True)
  tmp = os.path.join(args.out, "refresh.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"model": args.model, "limit": len(lab.examples), "sampler": args.sampler,
               "cache": args.cache, "gen_length": base.gen_length,
               "block_length": base.block_length, "rows": rows}, f, indent=1)
  os.replace(tmp, os.path.join(args.out, "refresh.json"))


if __name__ == "__main__":
  main()

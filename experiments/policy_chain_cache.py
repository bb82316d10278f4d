"""What the prefix KV cache costs full-diffusion decoding on toy-chain, before policy
training rolls out under it (issue 22, item 1).

    python experiments/policy_chain_cache.py --limit 500

Full diffusion (one block of 128), temperature 0, the same held-out chains and keys with
`cache="none"` and `cache="prefix"`, for the threshold rule (tau 0.9, the expert of the
policy's rollouts) and greedy low-confidence decoding at 2 tokens a step. Prints accuracy
(Wilson 95%), the paired difference prefix - none (bootstrap 95% over chains), NFE and forward
tokens, and writes `results.json` (with per-chain correctness) under `--out`. The decision
rule of the issue: if the prefix cache costs more than 1 point, training rolls out without it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from experiments.cache_accuracy import paired_ci
from lookum_jax.evaluation import evaluate
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.toylab import open_task_model


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--tau", type=float, default=0.9)
  parser.add_argument("--out", default="experiments/results/chain/policy_cache")
  args = parser.parse_args(argv)
  lab = open_task_model(args.model, limit=args.limit)
  gen = lab.spec.gen_length
  samplers = {
      f"threshold {args.tau}": SamplerConfig(gen_length=gen, block_length=gen,
                                            strategy=Threshold(tau=args.tau)),
      "low_confidence 2/step": SamplerConfig(gen_length=gen, block_length=gen, steps=gen // 2),
  }
  rows = []
  print(f"{args.model}, {len(lab.examples)} held-out chains, full diffusion (block {gen})")
  print("| sampler | cache | accuracy | 95% CI | prefix - none (paired 95% CI) | NFE | "
        "forward tokens | wall s |")
  print("|---|---|---|---|---|---|---|---|")
  for label, base in samplers.items():
    reference = None
    for cache in ("none", "prefix"):
      start = time.perf_counter()
      result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples,
                        base.replace(cache=cache), jax.random.key(0),
                        batch_size=args.batch_size, progress=False)
      wall = time.perf_counter() - start
      correct = np.asarray([r["correct"] for r in result.records])
      reference = correct if reference is None else reference
      mean, low, high = paired_ci(correct, reference)
      tokens = float(np.mean([r["forward_tokens"] for r in result.records]))
      rows.append(dict(sampler=label, cache=cache, accuracy=result.accuracy, ci95=result.ci95,
                       diff=mean, diff_ci95=(low, high), mean_nfe=result.mean_nfe,
                       forward_tokens=tokens, wall_s=wall,
                       correct=[bool(c) for c in correct]))
      diff = ("-" if cache == "none"
              else f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
      print(f"| {label} | {cache} | {100 * result.accuracy:.1f}% | "
            f"[{100 * result.ci95[0]:.1f}, {100 * result.ci95[1]:.1f}] | {diff} | "
            f"{result.mean_nfe:.1f} | {tokens:.0f} | {wall:.0f} |", flush=True)
  os.makedirs(args.out, exist_ok=True)
  tmp = os.path.join(args.out, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"model": args.model, "limit": len(lab.examples), "gen_length": gen,
               "block_length": gen, "rows": rows}, f, indent=1)
  os.replace(tmp, os.path.join(args.out, "results.json"))


if __name__ == "__main__":
  main()

"""What the prefix KV cache costs full-diffusion decoding on toy-chain, before policy
training rolls out under it (issue 22, item 1).

    python experiments/policy_chain_cache.py --limit 500 [--samplers threshold low_confidence]

Full diffusion (one block of 128), temperature 0, the same held-out chains and keys with
`cache="none"` and `cache="prefix"`, for the threshold rule (tau 0.9, the expert of the
policy's rollouts) and greedy low-confidence decoding at 2 tokens a step. Prints accuracy
(Wilson 95%), the paired difference prefix - none (bootstrap 95% over chains), NFE and forward
tokens, and writes `records.jsonl` (per chain; a rerun resumes from it) and `results.json`
under `--out`. Batches of chains are decoded by every sampler and cache in turn, so an
interrupted run still has paired results on the chains it finished. The decision
rule of the issue: if the prefix cache costs more than 1 point, training rolls out without it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from lookum_jax.evaluation import evaluate, wilson_interval
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.studies import paired_bootstrap
from lookum_jax.toylab import open_task_model

SAMPLERS = ("threshold", "low_confidence")


def samplers_for(names, gen: int, tau: float) -> dict[str, SamplerConfig]:
  out = {}
  for name in names:
    if name == "threshold":
      out[f"threshold {tau}"] = SamplerConfig(gen_length=gen, block_length=gen,
                                              strategy=Threshold(tau=tau))
    else:
      out["low_confidence 2/step"] = SamplerConfig(gen_length=gen, block_length=gen,
                                                   steps=gen // 2)
  return out


def summarise(records: list[dict], labels) -> list[dict]:
  """Paired rows over the chains both caches have decoded, per sampler."""
  rows = []
  for label in labels:
    by_cache = {c: {r["index"]: r for r in records if r["sampler"] == label and r["cache"] == c}
                for c in ("none", "prefix")}
    common = sorted(set(by_cache["none"]) & set(by_cache["prefix"]))
    if not common:
      continue
    reference = np.asarray([by_cache["none"][i]["correct"] for i in common])
    for cache in ("none", "prefix"):
      chosen = [by_cache[cache][i] for i in common]
      correct = np.asarray([r["correct"] for r in chosen])
      mean, low, high = paired_bootstrap(correct, reference)
      k = int(correct.sum())
      rows.append(dict(sampler=label, cache=cache, n=len(common), accuracy=k / len(common),
                       ci95=wilson_interval(k, len(common)), diff=mean, diff_ci95=(low, high),
                       mean_nfe=float(np.mean([r["nfe"] for r in chosen])),
                       forward_tokens=float(np.mean([r["forward_tokens"] for r in chosen]))))
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--batch-size", type=int, default=50,
                      help="chains per batch; each batch is decoded by every sampler and cache "
                           "before the next, so an interrupted run has paired results")
  parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
  parser.add_argument("--caches", nargs="+", choices=("none", "prefix"),
                      default=["none", "prefix"],
                      help="decode with these caches only (two processes can share --out)")
  parser.add_argument("--tau", type=float, default=0.9)
  parser.add_argument("--out", default="experiments/results/chain/policy_cache")
  args = parser.parse_args(argv)
  lab = open_task_model(args.model, limit=args.limit)
  gen = lab.spec.gen_length
  samplers = samplers_for(args.samplers, gen, args.tau)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "records.jsonl")
  records = []
  if os.path.exists(path):  # resume: batches already decoded are kept
    with open(path) as f:
      records = [json.loads(line) for line in f if line.strip()]
  done = {(r["sampler"], r["cache"], r["index"]) for r in records}
  print(f"{args.model}, {len(lab.examples)} held-out chains, full diffusion (block {gen})",
        flush=True)
  for first in range(0, len(lab.examples), args.batch_size):
    index = list(range(first, min(first + args.batch_size, len(lab.examples))))
    for label, base in samplers.items():
      for cache in args.caches:
        if all((label, cache, i) in done for i in index):
          continue
        start = time.perf_counter()
        # One key per chain (fold_in of its index), as `evaluate` gives over the whole set.
        result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples,
                          base.replace(cache=cache), jax.random.key(0),
                          batch_size=len(index), progress=False,
                          done={i: {"correct": False, "nfe": 0, "steps": 0, "forward_tokens": 0}
                                for i in range(len(lab.examples)) if i not in index})
        new = [{"sampler": label, "cache": cache, "index": i,
                **{k: result.records[i][k] for k in ("correct", "nfe", "forward_tokens")}}
               for i in index]
        records += new
        with open(path, "a") as f:
          f.writelines(json.dumps(r) + "\n" for r in new)
        print(f"chains {index[0]}-{index[-1]}: {label}, {cache}: "
              f"{np.mean([r['correct'] for r in new]):.3f} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
  rows = summarise(records, samplers)
  print("| sampler | cache | chains | accuracy | 95% CI | prefix - none (paired 95% CI) | NFE | "
        "forward tokens |")
  print("|---|---|---|---|---|---|---|---|")
  for row in rows:
    diff = ("-" if row["cache"] == "none" else
            f"{100 * row['diff']:+.1f} [{100 * row['diff_ci95'][0]:+.1f}, "
            f"{100 * row['diff_ci95'][1]:+.1f}]")
    print(f"| {row['sampler']} | {row['cache']} | {row['n']} | {100 * row['accuracy']:.1f}% | "
          f"[{100 * row['ci95'][0]:.1f}, {100 * row['ci95'][1]:.1f}] | {diff} | "
          f"{row['mean_nfe']:.1f} | {row['forward_tokens']:.0f} |")
  tmp = os.path.join(args.out, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"model": args.model, "limit": len(lab.examples), "gen_length": gen,
               "block_length": gen, "rows": rows}, f, indent=1)
  os.replace(tmp, os.path.join(args.out, "results.json"))


if __name__ == "__main__":
  main()

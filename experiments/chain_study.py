"""LookUM and the baselines on the long lab (toy-chain), with controls and paired CIs.

One line-up per block length and tokens-per-step, on the same held-out problems:
  - greedy low_confidence at every tokens-per-step (the "K times more steps" front: at 2
    tokens a step, K = 2 paths cost what 1 token a step costs);
  - LookUM with K paths, and on the same proposals the `oracle` control (keeps a candidate
    that commits no wrong token) and the `random` pick: oracle - random is the path
    generator's headroom, and where the verifier lands between them is its quality;
  - the threshold front (tau sweep) and the EB front (gamma sweep).
Each setting is compared with greedy at the same tokens per step on the same problems and
seeds (paired bootstrap, 95%). Results are JSON per setting (an interrupted study resumes:
a finished setting is read back when its fingerprint, over the whole sampler, the model's
files, the problems, seeds and n, matches; `lookum_jax.studies`), plus a Markdown table, a
CSV and an accuracy-against-NFE plot with one line per family.

  python experiments/chain_study.py --model toy-chain --limit 200 --tokens-per-step 2 \\
      --paths 2 3 --seeds 0
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from lookum_jax.configfile import parse_key_values
from lookum_jax.evaluation import EvalResult, wilson_interval
from lookum_jax.parsing import parse_strategy
from lookum_jax.plotting import plot_accuracy_vs_nfe
from lookum_jax.sampling import EntropyBounded, LowConfidence, SamplerConfig, Threshold
from lookum_jax.studies import file_name, lab_identity, paired_bootstrap, run_setting
from lookum_jax.tasks.tokenizer import encode_example
from lookum_jax.toylab import open_task_model


def parse_variant(text: str) -> dict:
  """LookUM parameters from "key=value,key=value" ("" = the defaults), checked by the parser."""
  params = parse_key_values(list(filter(None, text.split(","))), "--lookum-variant")
  parse_strategy("lookum", params, what="--lookum-variant")
  return params


def line_up(gen: int, block: int, cache: str, tokens_per_step: list[int], paths: list[int],
            selections: list[str], taus: list[float], gammas: list[float],
            variants: list[str] = ("",)) -> list[tuple[str, int, SamplerConfig, bool]]:
  """(label, tokens per step or 0, config, random) for every setting of the study."""
  settings = []
  common = dict(gen_length=gen, block_length=block, cache=cache)
  for k in sorted(set(tokens_per_step) | {1, 2, 4}):
    settings.append((f"greedy {k}/step", k, SamplerConfig(
        steps=gen // k, strategy=LowConfidence(), **common), False))
  for variant in variants:
    fields = parse_variant(variant)
    suffix = f" [{variant}]" if variant else ""
    for k in tokens_per_step:
      for K in paths:
        for selection in selections:
          strategy = parse_strategy("lookum", {**fields, "paths": K, "selection": selection},
                                    what="--lookum-variant")
          settings.append((f"lookum K={K} {selection} {k}/step{suffix}", k, SamplerConfig(
              steps=gen // k, strategy=strategy, **common), True))
  for tau in taus:
    settings.append((f"threshold tau={tau}", 0, SamplerConfig(
        steps=gen, strategy=Threshold(tau=tau), **common), False))
  for gamma in gammas:
    settings.append((f"eb gamma={gamma}", 0, SamplerConfig(
        steps=gen, strategy=EntropyBounded(gamma=gamma), **common), False))
  return settings


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--limit", type=int, default=200)
  parser.add_argument("--block-length", type=int, default=None,
                      help="default: the model's (full diffusion for toy-chain)")
  parser.add_argument("--cache", default="none", choices=("none", "prefix", "dual"))
  parser.add_argument("--tokens-per-step", type=int, nargs="+", default=[2],
                      help="where LookUM runs (greedy runs at 1, 2 and 4 as well)")
  parser.add_argument("--paths", type=int, nargs="*", default=[2, 3])
  parser.add_argument("--selections", nargs="*", default=["is", "oracle", "random"])
  parser.add_argument("--taus", type=float, nargs="*", default=[0.7, 0.9, 0.97])
  parser.add_argument("--gammas", type=float, nargs="*", default=[0.1, 1.0])
  parser.add_argument("--lookum-variant", nargs="*", default=[""],
                      help='LookUM settings to compare, each "field=value,..." ("" = defaults)')
  parser.add_argument("--seeds", type=int, nargs="+", default=[0])
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--out", default="experiments/results/chain/study")
  parser.add_argument("--tag", default="",
                      help="suffix of the table files (the per-setting runs are shared)")
  args = parser.parse_args()
  out = Path(args.out)
  (out / "runs").mkdir(parents=True, exist_ok=True)

  lab = open_task_model(args.model, limit=args.limit)
  gen = lab.gen_length
  block = args.block_length or lab.block_length
  tok, task = lab.tokenizer, lab.task
  targets = np.stack([encode_example(task, ex, tok, gen)[1] for ex in lab.examples])
  settings = line_up(gen, block, args.cache, args.tokens_per_step, args.paths,
                     args.selections, args.taus, args.gammas, args.lookum_variant)
  runs_tag = f"block{block}_{args.cache}"
  tag = runs_tag + (f"_{args.tag}" if args.tag else "")
  results: dict[str, list[EvalResult]] = {}
  identity = lab_identity(lab)
  t0 = time.perf_counter()
  for label, _, config, random in settings:
    seeds = args.seeds if random else args.seeds[:1]
    path = out / "runs" / f"{runs_tag}_{file_name(label)}.json"
    results[label] = run_setting(lab, config, label, seeds, path, batch_size=args.batch_size,
                                 targets=targets, identity=identity)
    r = results[label]
    print(f"{label:32s} acc {np.mean([x.accuracy for x in r]):.3f}  "
          f"NFE {np.mean([x.mean_nfe for x in r]):6.1f}  ({time.perf_counter() - t0:.0f} s)",
          flush=True)

  def correct(label: str, n_seeds: int) -> np.ndarray:
    """[seeds * problems] correctness; a deterministic setting repeats its one seed."""
    runs = results[label]
    return np.concatenate([[rec["correct"] for rec in runs[min(s, len(runs) - 1)].records]
                           for s in range(n_seeds)])

  rows = []
  for label, k, *_ in settings:
    runs = results[label]
    n_seeds = len(runs)
    steps = np.mean([[task.step_accuracy(ex, rec["response"])
                      for ex, rec in zip(lab.examples, run.records, strict=True)]
                     for run in runs])
    row = {"setting": label, "family": label.split(" ")[0], "tokens_per_step": k or None,
           "accuracy": float(np.mean([x.accuracy for x in runs])),
           "step_accuracy": float(steps), "mean_nfe": float(np.mean([x.mean_nfe for x in runs])),
           "seeds": n_seeds, "n": runs[0].n}
    if k and not label.startswith("greedy"):
      diff, lo, hi = paired_bootstrap(correct(label, n_seeds),
                                      correct(f"greedy {k}/step", n_seeds))
      row.update(vs_greedy=diff, vs_greedy_ci95=[lo, hi])
    rows.append(row)

  meta = {"model": args.model, "task": task.name, "gen_length": gen, "block_length": block,
          "cache": args.cache, "n_problems": len(lab.examples), "seeds": args.seeds,
          "wall_s": time.perf_counter() - t0}
  (out / f"{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
  with open(out / f"{tag}.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"{args.model}, block {block}, cache {args.cache}, {len(lab.examples)} held-out "
           f"problems, seeds {args.seeds} (random settings) ", "",
           "| setting | accuracy | step acc. | NFE | vs greedy same tokens/step [95% CI] |",
           "|---|---|---|---|---|"]
  for r in rows:
    vs = (f"{100 * r['vs_greedy']:+.1f} [{100 * r['vs_greedy_ci95'][0]:+.1f}, "
          f"{100 * r['vs_greedy_ci95'][1]:+.1f}]" if "vs_greedy" in r else "")
    lines.append(f"| {r['setting']} | {r['accuracy']:.3f} | {r['step_accuracy']:.3f} | "
                 f"{r['mean_nfe']:.1f} | {vs} |")
  (out / f"{tag}.md").write_text("\n".join(lines) + "\n")
  pooled = []  # one point per setting, its seeds pooled
  for label, *_ in settings:
    runs = results[label]
    correct, n = sum(r.correct for r in runs), sum(r.n for r in runs)
    pooled.append(EvalResult(
        task=runs[0].task, label=label, sampler=runs[0].sampler, n=n, correct=correct,
        accuracy=correct / n, ci95=wilson_interval(correct, n),
        mean_nfe=float(np.mean([r.mean_nfe for r in runs])),
        mean_steps=float(np.mean([r.mean_steps for r in runs])), token_error_rate=None,
        wall_time_s=0.0, compile_time_s=0.0))
  plot_accuracy_vs_nfe(pooled, out / f"{tag}.png",
                       title=f"{args.model}: block {block}, cache {args.cache}")
  print("\n".join(lines))
  print(f"wrote {out}/{tag}.*")


if __name__ == "__main__":
  main()

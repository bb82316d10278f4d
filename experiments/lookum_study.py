"""LookUM on a shipped toy model: paths K, equal-compute baselines, seeds.

Tables (accuracy with 95% Wilson intervals pooled over seeds, token error rate, NFE):
  1. accuracy and token error rate against K = 1..max_paths, at each tokens-per-step;
  2. LookUM against equal compute: the base strategy with K times more steps, and
     best-of-K independent samples (temperature > 0) with a majority vote.
Writes JSON, CSV, a Markdown table and plots under --out; each setting's runs are kept in
OUT/runs and read back on a rerun while their fingerprint (the whole sampler, the model's
files, the problems, the seeds; `lookum_jax.studies`) is unchanged.

  python experiments/lookum_study.py --model toy-sudoku --limit 500 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np

from lookum_jax.configfile import parse_key_values
from lookum_jax.evaluation import EvalResult, wilson_interval
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig
from lookum_jax.studies import file_name, lab_identity, run_setting
from lookum_jax.toylab import open_task_model


def pooled(results: list[EvalResult]) -> dict:
  """Pools one setting's runs over seeds."""
  correct = sum(r.correct for r in results)
  n = sum(r.n for r in results)
  ter = [r.token_error_rate for r in results if r.token_error_rate is not None]
  return {
      "n": n, "accuracy": correct / n, "ci95": wilson_interval(correct, n),
      "seed_accuracies": [r.accuracy for r in results],
      "token_error_rate": float(np.mean(ter)) if ter else None,
      "mean_nfe": float(np.mean([r.mean_nfe for r in results])),
      "mean_steps": float(np.mean([r.mean_steps for r in results])),
      "accuracy_per_1k_nfe": 1000 * correct / n / float(np.mean([r.mean_nfe for r in results])),
  }


def majority_vote(runs: list[EvalResult], task, examples) -> tuple[int, int]:
  """Correct answers of a per-problem majority vote over the runs' responses."""
  correct = 0
  for i, example in enumerate(examples):
    votes = collections.Counter(run.records[i]["response"] for run in runs)
    answer = votes.most_common(1)[0][0]
    correct += bool(task.score(example, answer))
  return correct, len(examples)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--data", help="JSONL examples (default: the model's held-out set)")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--paths", type=int, nargs="+", default=[1, 2, 3, 4, 6])
  parser.add_argument("--tokens-per-step", type=int, nargs="+", default=[1, 2, 4])
  parser.add_argument("--vote-temperature", type=float, default=1.0,
                      help="sampling temperature of the best-of-K baseline")
  parser.add_argument("--lookum-param", action="append", metavar="KEY=VALUE",
                      help="a LookUM parameter for every LookUM run (repeatable), e.g. "
                      "verifier_scope=common")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--out", default="experiments/results/lookum")
  args = parser.parse_args()

  lookum_params = parse_key_values(args.lookum_param, "--lookum-param")
  lab = open_task_model(args.model, data=args.data, limit=args.limit)
  gen, block = lab.spec.gen_length, lab.spec.block_length
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  base = SamplerConfig(gen_length=gen, block_length=block, steps=gen)
  rows, t0 = [], time.perf_counter()
  (out / "runs").mkdir(exist_ok=True)
  identity = lab_identity(lab)

  def cached(label: str, config: SamplerConfig, seeds: list[int]) -> list[EvalResult]:
    """One setting over `seeds`, read back from OUT/runs when its fingerprint is unchanged."""
    return run_setting(lab, config, label, seeds, out / "runs" / f"{file_name(label)}.json",
                       batch_size=args.batch_size, identity=identity)

  def run(label: str, config: SamplerConfig, **extra) -> list[EvalResult]:
    results = cached(label, config, args.seeds)
    row = {"setting": label, **extra, **pooled(results)}
    rows.append(row)
    ter = row["token_error_rate"]
    print(f"{label:<40} acc {row['accuracy']:.3f} [{row['ci95'][0]:.3f},{row['ci95'][1]:.3f}] "
          f"tok.err {ter if ter is None else round(ter, 4)} NFE {row['mean_nfe']:.1f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return results

  for tps in args.tokens_per_step:
    steps = max(gen // tps, gen // block)
    for k in args.paths:
      strategy = parse_strategy("lookum", {**lookum_params, "paths": k}, what="--lookum-param")
      config = base.replace(steps=steps, strategy=strategy)
      run(f"lookum K={k} {tps}/step", config, study="paths", paths=k, tokens_per_step=tps)
    for k in args.paths[1:]:
      # Equal compute 1: the base strategy with K times more steps (capped at 1/step).
      more = min(gen, steps * k)
      run(f"low_confidence x{k} steps {tps}/step", base.replace(steps=more),
          study="more_steps", paths=k, tokens_per_step=tps)
    # Equal compute 2: best-of-K samples with a majority vote.
    sampled = base.replace(steps=steps, temperature=args.vote_temperature)
    draws = cached(f"sample T={args.vote_temperature} {tps}/step", sampled,
                   [1000 + d for d in range(max(args.paths))])
    for k in args.paths[1:]:
      correct, n = majority_vote(draws[:k], lab.task, lab.examples)
      nfe = float(np.mean([d.mean_nfe for d in draws[:k]])) * k
      rows.append({"setting": f"best-of-{k} vote T={args.vote_temperature} {tps}/step",
                   "study": "vote", "paths": k, "tokens_per_step": tps, "n": n,
                   "accuracy": correct / n, "ci95": wilson_interval(correct, n),
                   "mean_nfe": nfe, "token_error_rate": None,
                   "accuracy_per_1k_nfe": 1000 * correct / n / nfe})
      print(f"{rows[-1]['setting']:<40} acc {correct / n:.3f} NFE {nfe:.1f}", flush=True)

  meta = {"model": args.model, "task": lab.task.name, "n_problems": len(lab.examples),
          "seeds": args.seeds, "gen_length": gen, "block_length": block,
          "lookum_params": lookum_params,
          "wall_s": time.perf_counter() - t0}
  (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
  write_tables(rows, out)
  plot(rows, out, args.paths)
  print(f"wrote {out}/ ({meta['wall_s']:.0f} s)")


def write_tables(rows: list[dict], out: Path) -> None:
  with open(out / "results.csv", "w") as f:
    f.write("setting,study,paths,tokens_per_step,n,accuracy,ci_low,ci_high,token_error_rate,"
            "mean_nfe,accuracy_per_1k_nfe\n")
    for r in rows:
      ter = "" if r.get("token_error_rate") is None else f"{r['token_error_rate']:.5f}"
      f.write(f"{r['setting']},{r['study']},{r['paths']},{r['tokens_per_step']},{r['n']},"
              f"{r['accuracy']:.4f},{r['ci95'][0]:.4f},{r['ci95'][1]:.4f},{ter},"
              f"{r['mean_nfe']:.2f},{r['accuracy_per_1k_nfe']:.3f}\n")
  lines = ["| setting | accuracy | 95% CI | token err. | NFE | acc. per 1k NFE |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    ter = "-" if r.get("token_error_rate") is None else f"{r['token_error_rate']:.4f}"
    lines.append(f"| {r['setting']} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}-"
                 f"{r['ci95'][1]:.3f} | {ter} | {r['mean_nfe']:.1f} | "
                 f"{r['accuracy_per_1k_nfe']:.2f} |")
  (out / "results.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], out: Path, paths: list[int]) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
  for i, tps in enumerate(sorted({r["tokens_per_step"] for r in rows})):
    mine = [r for r in rows if r["study"] == "paths" and r["tokens_per_step"] == tps]
    ks = [r["paths"] for r in mine]
    acc = np.array([r["accuracy"] for r in mine])
    err = np.array([[r["accuracy"] - r["ci95"][0], r["ci95"][1] - r["accuracy"]] for r in mine]).T
    ax1.errorbar(ks, acc, yerr=err, marker="o", capsize=3, color=f"C{i}", label=f"{tps}/step")
    for study, marker in (("paths", "o"), ("more_steps", "s"), ("vote", "^")):
      sel = [r for r in rows if r["study"] == study and r["tokens_per_step"] == tps]
      ax2.plot([r["mean_nfe"] for r in sel], [r["accuracy"] for r in sel], marker=marker,
               linestyle="-" if study == "paths" else ":", color=f"C{i}",
               label=f"{study} {tps}/step")
  ax1.set_xlabel("candidate paths K")
  ax1.set_ylabel("accuracy")
  ax1.set_xticks(paths)
  ax1.grid(alpha=0.3)
  ax1.legend()
  ax2.set_xscale("log")
  ax2.set_xlabel("mean NFE (log)")
  ax2.set_ylabel("accuracy")
  ax2.grid(alpha=0.3, which="both")
  ax2.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(out / "lookum_paths.png")
  plt.close(fig)


if __name__ == "__main__":
  main()

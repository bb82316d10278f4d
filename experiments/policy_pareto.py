"""Accuracy against NFE of learned unmasking policies and the heuristics they replace.

On a toy model's held-out set, at one block length, evaluates the confidence threshold swept
over tau, the EB-Sampler swept over gamma, low_confidence at fixed tokens per step, and each
given policy (deterministic mode, and optionally sampled / test-time scaled). Every point gets
a Wilson 95% interval. Results are cached per label in OUT/results.json under each setting's
fingerprint (`lookum_jax.studies`), so a rerun only evaluates what is missing or changed (add
a policy, retrain one, change a default: rerun).

    python experiments/policy_pareto.py --model toy-sudoku --limit 500 --block-length 16 \
        --policy alpha1=runs/policy/a1/policy --out experiments/results/policy_pareto_block16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

import policy_rl
from lookum_jax.configfile import parse_value
from lookum_jax.evaluation import evaluate, format_table
from lookum_jax.fingerprint import fingerprint
from lookum_jax.sampling import EntropyBounded, SamplerConfig, Threshold
from lookum_jax.studies import directory_fingerprint, lab_identity, setting_key
from lookum_jax.toylab import open_task_model

TAUS = (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.97, 0.99, 0.999)
GAMMAS = (0.001, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 3.0)
FAMILY_STYLE = {"threshold": ("C0", "o"), "entropy_bounded": ("C1", "s"),
                "low_confidence": ("C2", "^"), "policy": ("C3", "*")}


def baseline_line_up(gen_length: int, block_length: int, taus=TAUS, gammas=GAMMAS
                     ) -> list[tuple[str, str, SamplerConfig]]:
  """(family, label, config) of every heuristic point at this block length."""
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  num_blocks = gen_length // block_length
  out = []
  for tau in taus:
    out.append(("threshold", f"threshold tau={tau:g}",
                base.replace(strategy=Threshold(tau=tau))))
  for gamma in gammas:
    out.append(("entropy_bounded", f"entropy_bounded gamma={gamma:g}",
                base.replace(strategy=EntropyBounded(gamma=gamma))))
  steps = gen_length
  while steps >= num_blocks:
    out.append(("low_confidence", f"low_confidence {gen_length // steps}/step",
                base.replace(steps=steps)))
    steps //= 2
  return out


def policy_line_up(label: str, gen_length: int, block_length: int, features: tuple[str, ...],
                   modes: list[str], betas: list[float]) -> list[tuple[str, str, SamplerConfig]]:
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  out = []
  for mode in modes:
    if mode == "scaled":
      for beta in betas:
        out.append(("policy", f"policy {label} scaled beta={beta:g}", base.replace(
            strategy=policy_rl.Policy(mode=mode, features=features, beta=beta))))
    else:
      out.append(("policy", f"policy {label} {mode}", base.replace(
          strategy=policy_rl.Policy(mode=mode, features=features))))
  return out


def pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Points not dominated (no other point has <= NFE and > accuracy, or < NFE and >=)."""
  front = []
  for p in points:
    dominated = any(
        (q["mean_nfe"] <= p["mean_nfe"] and q["accuracy"] > p["accuracy"])
        or (q["mean_nfe"] < p["mean_nfe"] and q["accuracy"] >= p["accuracy"]) for q in points)
    if not dominated:
      front.append(p)
  return sorted(front, key=lambda p: p["mean_nfe"])


def upper_envelope(points: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
  """(NFE, accuracy) of a family's points sorted by NFE, accuracy made non-decreasing (a
  heuristic that can spend more NFE can always be given the faster setting's answers)."""
  pts = sorted(points, key=lambda p: p["mean_nfe"])
  nfe = np.array([p["mean_nfe"] for p in pts])
  acc = np.maximum.accumulate(np.array([p["accuracy"] for p in pts]))
  return nfe, acc


def compare_to_family(policy: dict[str, Any], family: list[dict[str, Any]]) -> dict[str, Any]:
  """The family's accuracy at the policy's NFE and the NFE it needs for the policy's accuracy
  (linear interpolation on its upper envelope; None outside its range), and a paired
  comparison with the family's point of nearest NFE on the same problems."""
  nfe, acc = upper_envelope(family)
  out: dict[str, Any] = {"acc_at_policy_nfe": None, "nfe_at_policy_acc": None}
  if nfe[0] <= policy["mean_nfe"] <= nfe[-1]:
    out["acc_at_policy_nfe"] = float(np.interp(policy["mean_nfe"], nfe, acc))
  if acc[0] <= policy["accuracy"] <= acc[-1]:
    first = int(np.argmax(acc >= policy["accuracy"]))
    if first == 0:
      out["nfe_at_policy_acc"] = float(nfe[0])
    else:
      lo, hi = first - 1, first
      frac = (policy["accuracy"] - acc[lo]) / max(acc[hi] - acc[lo], 1e-12)
      out["nfe_at_policy_acc"] = float(nfe[lo] + frac * (nfe[hi] - nfe[lo]))
  nearest = min(family, key=lambda p: abs(p["mean_nfe"] - policy["mean_nfe"]))
  out["nearest"] = nearest["label"]
  out["nearest_nfe"] = nearest["mean_nfe"]
  if "correct_bits" in policy and "correct_bits" in nearest:
    a = np.array([c == "1" for c in policy["correct_bits"]], float)
    b = np.array([c == "1" for c in nearest["correct_bits"]], float)
    diff = a - b
    rng = np.random.default_rng(0)
    boot = rng.choice(diff, size=(2000, diff.size)).mean(axis=1)
    out["paired_diff"] = float(diff.mean())
    out["paired_diff_ci95"] = [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]
  return out


def plot(records: list[dict[str, Any]], path: Path, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
  families: dict[str, list[dict[str, Any]]] = {}
  for r in records:
    key = r["family"] if r["family"] != "policy" else r["label"].rsplit(" ", 1)[0]
    families.setdefault(key, []).append(r)
  policy_colors = iter(["C3", "C4", "C5", "C6", "C7", "C8", "C9"])
  for key, rs in families.items():
    rs = sorted(rs, key=lambda r: r["mean_nfe"])
    family = rs[0]["family"]
    color, marker = FAMILY_STYLE[family]
    if family == "policy":
      color = next(policy_colors, "k")
    x = [r["mean_nfe"] for r in rs]
    y = [r["accuracy"] for r in rs]
    err = [[r["accuracy"] - r["ci95"][0] for r in rs], [r["ci95"][1] - r["accuracy"] for r in rs]]
    ax.errorbar(x, y, yerr=err, fmt=marker + ("-" if family != "policy" else ""),
                color=color, capsize=2, ms=9 if family == "policy" else 5, lw=1,
                label=key, alpha=0.9)
  ax.set_xscale("log")
  ax.set_xlabel("mean NFE per problem (log scale)")
  ax.set_ylabel("accuracy (Wilson 95% CI)")
  ax.grid(alpha=0.3, which="both")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--task", help="task name (default: the model's task.json; needed for a "
                      "model directory without one)")
  parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                      help="task option, e.g. size=4 (repeatable)")
  parser.add_argument("--data", help="examples JSONL (default: the model's held-out set)")
  parser.add_argument("--gen-length", type=int, default=None,
                      help="response length (default: the model's task.json, else the task's)")
  parser.add_argument("--block-length", type=int, default=None,
                      help="semi-AR block (default: the model's, else full diffusion)")
  parser.add_argument("--policy", action="append", default=[], metavar="LABEL=DIR",
                      help="a trained policy to evaluate (repeatable)")
  parser.add_argument("--modes", nargs="+", default=["deterministic"],
                      help="policy modes: deterministic, sample, scaled")
  parser.add_argument("--betas", nargs="+", type=float, default=[0.5, 2.0])
  parser.add_argument("--no-baselines", action="store_true")
  parser.add_argument("--taus", nargs="+", type=float, default=list(TAUS))
  parser.add_argument("--gammas", nargs="*", type=float, default=list(GAMMAS),
                      help="EB-Sampler gammas (none given: no EB-Sampler rows)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch-size", type=int, default=250)
  parser.add_argument("--redo", action="append", default=[], help="re-evaluate this label")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)

  task_options = {key: parse_value(value) for key, _, value in
                  (item.partition("=") for item in args.task_option)}
  lab = open_task_model(args.model, task_name=args.task, task_options=task_options, data=args.data,
                 limit=args.limit)
  gen_length = args.gen_length or (lab.spec.gen_length if lab.spec else lab.task.gen_length)
  block_length = args.block_length or (
      lab.spec.block_length if lab.spec and not args.gen_length else gen_length)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  cache_path = out / "results.json"
  cached = json.loads(cache_path.read_text()) if cache_path.exists() else []
  done = {r["label"]: r for r in cached if r["label"] not in args.redo}
  # A stored row is reused only under its setting's fingerprint (the whole sampler, the
  # model's and the policy's files, the problems, the seed): a changed default re-runs.
  identity = lab_identity(lab)

  line_up = [] if args.no_baselines else baseline_line_up(gen_length, block_length,
                                                         args.taus, args.gammas)
  policies = {}
  for item in args.policy:
    label, _, directory = item.partition("=")
    policy = policy_rl.load_policy(directory)
    policies[label] = (directory, policy, directory_fingerprint(directory))
    for entry in policy_line_up(label, gen_length, block_length, policy.config.features,
                                args.modes, args.betas):
      line_up.append(entry)

  print(f"{lab.task.name}: {len(lab.examples)} held-out problems, gen_length {gen_length}, "
        f"block_length {block_length}", flush=True)
  for family, label, config in line_up:
    policy, policy_dir, policy_files = None, None, None
    if family == "policy":
      name = label.split(" ")[1]
      policy_dir, policy, policy_files = policies[name]
    key = setting_key(config, **identity, seeds=[args.seed], n=len(lab.examples),
                      policy=policy_files)
    if done.get(label, {}).get("fingerprint") == fingerprint(key):
      continue
    bound = config if policy is None else config.with_policy(policy)
    result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, bound,
                      jax.random.key(args.seed), batch_size=args.batch_size, label=label,
                      progress=False)
    print(format_table([result]).splitlines()[-1], flush=True)
    record = {"family": family, **result.summary(), "policy_dir": policy_dir,
              "block_length": block_length, "seed": args.seed,
              "correct_bits": "".join("1" if r["correct"] else "0" for r in result.records),
              "fingerprint": fingerprint(key)}
    done[label] = record
    cache_path.write_text(json.dumps(list(done.values()), indent=1, default=str) + "\n")

  records = list(done.values())
  with open(out / "results.csv", "w") as f:
    f.write("family,label,n,accuracy,ci_low,ci_high,mean_nfe,mean_steps\n")
    for r in sorted(records, key=lambda r: (r["family"], r["mean_nfe"])):
      f.write(f"{r['family']},{r['label']},{r['n']},{r['accuracy']:.4f},{r['ci95'][0]:.4f},"
              f"{r['ci95'][1]:.4f},{r['mean_nfe']:.3f},{r['mean_steps']:.3f}\n")
  plot(records, out / "accuracy_vs_nfe.png",
       f"{args.model}: {lab.task.name}, {len(lab.examples)} held-out problems, "
       f"gen_length {gen_length}, block {block_length}")
  comparisons = []
  for r in records:
    if r["family"] != "policy":
      continue
    for family in ("threshold", "entropy_bounded"):
      members = [q for q in records if q["family"] == family]
      if members:
        comparisons.append({"policy": r["label"], "accuracy": r["accuracy"],
                            "mean_nfe": r["mean_nfe"], "against": family,
                            **compare_to_family(r, members)})
  (out / "comparisons.json").write_text(json.dumps(comparisons, indent=1) + "\n")
  for c in comparisons:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    paired = ""
    if "paired_diff" in c:
      lo, hi = c["paired_diff_ci95"]
      paired = (f"; vs {c['nearest']} (NFE {c['nearest_nfe']:.2f}): "
                f"{c['paired_diff']:+.3f} [{lo:+.3f},{hi:+.3f}]")
    print(f"{c['policy']:<36} acc {c['accuracy']:.3f} NFE {c['mean_nfe']:.2f} | "
          f"{c['against']}: acc at this NFE {fmt(c['acc_at_policy_nfe'])}, NFE for this acc "
          f"{fmt(c['nfe_at_policy_acc'])}{paired}")
  print("\nPareto front:")
  for r in pareto_front(records):
    print(f"  {r['label']:<40} acc {r['accuracy']:.3f} NFE {r['mean_nfe']:.2f}")
  print(f"wrote {out}/results.json, results.csv, accuracy_vs_nfe.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Accuracy against NFE on toy-chain: learned policies against the heuristic fronts (issue 22,
item 3), paired on the same held-out chains.

One setting per run (`--setting`):
  full    full diffusion (one block of 128) under the prefix cache, the setting the chain
          policy was trained in (`configs/policy_chain.py`);
  semiar  blocks of 32 under the dual cache.

The line-up: the confidence threshold swept over tau, the entropy-bounded sampler over gamma,
greedy low_confidence at 1, 2 and 4 tokens a step, and each `--policy LABEL=DIR` in its
deterministic mode (p >= 0.5), its sampled mode and beta test-time scaling (Bernoulli(min(1,
beta p)), one point per beta). The heuristics decode at temperature 0 and read no key, so
they run once (seed 0); `--check-keys N` decodes the first N chains under a second key and
fails unless every token is the same. The policy's sampled modes run once per `--seeds` and are
pooled (n = chains x seeds); the deterministic mode runs once.

The headline is paired: each policy point against the threshold setting with the nearest NFE,
the per-chain difference (the policy's accuracy averaged over its seeds, minus the threshold's)
bootstrapped over chains. "Above the front" (the issue's test) is either of
  - higher accuracy at no more NFE: paired against the threshold point with the least NFE
    that is >= the policy's, the difference's 95% interval above 0;
  - <= 0.8x the NFE at accuracy within 1 point: a threshold point with NFE >= 1.25x the
    policy's whose accuracy is at most 1 point above the policy's (only for a policy more
    than 1 point above the front's least accurate point: below that it is off the front).
`--contrast A B` pairs any two points on the same chains (accuracy and NFE, a - b, bootstrapped
over chains), e.g. two policies' deterministic modes (the mixture-correction ablation).
Every setting is stored in OUT/settings/<label>.json under its fingerprint (sampler, model
files, policy files, problems, seeds): a rerun evaluates only what is missing or changed.

    python experiments/chain_fronts.py --setting full --limit 500 \\
        --policy chain=lookum_jax/assets/toy-chain/policy \\
        --out experiments/results/chain/fronts/full
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from policy_pareto import upper_envelope

import policy_rl
from lookum_jax.evaluation import evaluate, wilson_interval
from lookum_jax.sampling import EntropyBounded, SamplerConfig, Threshold
from lookum_jax.sampling.strategies.dus import DUS
from lookum_jax.sampling.strategies.klass import KLASS
from lookum_jax.sampling.strategies.pc_sampler import PCSampler
from lookum_jax.sampling.strategies.prophet import Prophet
from lookum_jax.studies import (
  cached_setting,
  directory_fingerprint,
  file_name,
  lab_identity,
  paired_bootstrap,
  setting_key,
)
from lookum_jax.toylab import open_task_model

SETTINGS = {"full": (None, "prefix"), "semiar": (32, "dual")}
TAUS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
GAMMAS = (0.01, 0.1, 1.0)
TOKENS_PER_STEP = (4, 2, 1)
BETAS = (0.5, 2.0)
STYLE = {"threshold": ("C0", "o"), "entropy_bounded": ("C1", "s"), "greedy": ("C2", "^"),
         "klass": ("C8", "D"), "pc_sampler": ("C9", "v"), "prophet": ("C7", "P"),
         "dus": ("C5", "X")}


def line_up(args: argparse.Namespace, gen_length: int, block_length: int
            ) -> list[dict[str, Any]]:
  """Every point: family, label, sampler config, seeds, and the policy it needs (or None)."""
  cache = SETTINGS[args.setting][1]
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length,
                       cache=cache)
  points = []
  for tau in args.taus:
    points.append({"family": "threshold", "label": f"threshold tau={tau:g}",
                   "config": base.replace(strategy=Threshold(tau=tau)), "seeds": [0]})
  for gamma in args.gammas:
    points.append({"family": "entropy_bounded", "label": f"entropy_bounded gamma={gamma:g}",
                   "config": base.replace(strategy=EntropyBounded(gamma=gamma)), "seeds": [0]})
  for k in args.tokens_per_step:
    points.append({"family": "greedy", "label": f"greedy {k}/step",
                   "config": base.replace(steps=gen_length // k), "seeds": [0]})
  if args.new_samplers:  # issue 23: the field's newer samplers, each over its main parameter
    for kl in (0.001, 0.01, 0.1):
      points.append({"family": "klass", "label": f"klass conf=0.9 kl={kl:g}", "seeds": [0],
                     "config": base.replace(strategy=KLASS(conf_threshold=0.9,
                                                           kl_threshold=kl))})
    for k in (2, 4, 8):
      points.append({"family": "pc_sampler", "label": f"pc_sampler decay=0.25 {k}/step",
                     "seeds": [0], "config": base.replace(steps=gen_length // k,
                                                          strategy=PCSampler(decay=0.25))})
    for scale in args.prophet_scales:  # the authors' staged gaps (7.5 / 5.0 / 2.5), scaled
      points.append({"family": "prophet", "label": f"prophet min x{scale:g}", "seeds": [0],
                     "config": base.replace(strategy=Prophet(
                         early=7.5 * scale, mid=5.0 * scale, late=2.5 * scale))})
    points.append({"family": "dus", "label": f"dus base=2 block={block_length}", "seeds": [0],
                   "config": base.replace(strategy=DUS(base=2))})
  for item in args.policy:
    name, _, directory = item.partition("=")
    policy = policy_rl.load_policy(directory)
    features = policy.config.features
    modes = [("deterministic", None, [0])]
    if not args.deterministic_only:
      modes += [("sample", None, args.seeds)] + [("scaled", b, args.seeds) for b in args.betas]
    if args.policy_lookum:  # item 7: the policy proposes K = 2 sets, the verifier keeps one
      for scope, pick in (("committed", 0.0), ("random pick", 1e6)):
        strategy = policy_rl.PolicyLookUM.from_params(
            {"paths": 2, "temperature": 1.0, "features": features,
             "selection_temperature": pick, "verifier_scope": "committed"})
        points.append({"family": f"policy_lookum {name}", "seeds": [0],
                       "label": f"policy_lookum {name} K=2 T=1 {scope}",
                       "config": base.replace(strategy=strategy), "policy": policy,
                       "policy_files": directory_fingerprint(directory),
                       "policy_dir": directory})
    for mode, beta, seeds in modes:
      strategy = policy_rl.Policy(mode=mode, features=features, **(
          {"beta": beta} if beta is not None else {}))
      label = f"policy {name} {mode}" + (f" beta={beta:g}" if beta is not None else "")
      points.append({"family": f"policy {name}", "label": label, "seeds": seeds,
                     "config": base.replace(strategy=strategy), "policy": policy,
                     "policy_files": directory_fingerprint(directory), "policy_dir": directory})
  return points


def run_point(lab, identity, point, out: Path, batch_size: int) -> dict[str, Any]:
  """Evaluates (or reads back) one point over its seeds; returns its pooled summary and the
  per-chain accuracy averaged over seeds."""
  config = point["config"]
  key = setting_key(config, **identity, seeds=point["seeds"], n=len(lab.examples),
                    policy=point.get("policy_files"))
  bound = config if point.get("policy") is None else config.with_policy(point["policy"])

  def run() -> list[dict[str, Any]]:
    results = []
    for seed in point["seeds"]:
      r = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, bound,
                   jax.random.key(seed), batch_size=batch_size, label=point["label"],
                   progress=False)
      results.append({**r.summary(), "seed": seed,
                      "records": [{"correct": x["correct"], "nfe": x["nfe"], "steps": x["steps"],
                                   "forward_tokens": x["forward_tokens"]}
                                  for x in r.records]})
    return results

  stored = cached_setting(out / "settings" / f"{file_name(point['label'])}.json", key, run)
  correct = np.array([[x["correct"] for x in r["records"]] for r in stored], float)  # [S, N]
  nfe = np.array([[x["nfe"] for x in r["records"]] for r in stored], float)
  n = correct.size
  forward = [x.get("forward_tokens") for r in stored for x in r["records"]]
  lo, hi = wilson_interval(int(correct.sum()), n)
  return {"family": point["family"], "label": point["label"], "seeds": point["seeds"], "n": n,
          "accuracy": float(correct.mean()), "ci95": [lo, hi], "mean_nfe": float(nfe.mean()),
          "wall_time_s": float(sum(r["wall_time_s"] for r in stored)),
          "decode_s": float(sum(r["wall_time_s"] - r["compile_time_s"] for r in stored)),
          "mean_forward_tokens": (float(np.mean(forward)) if None not in forward else None),
          "per_chain": correct.mean(axis=0), "per_chain_nfe": nfe.mean(axis=0)}


def check_keys(lab, points, count: int, batch_size: int) -> None:
  """Fails unless the first `count` chains decode to the same tokens under two keys, for every
  heuristic family (the reason they run at one seed)."""
  from lookum_jax.evaluation import encode_prompts
  from lookum_jax.sampling import generate
  from lookum_jax.tasks import left_pad_prompts

  prompts = encode_prompts(lab.tokenizer, lab.task, lab.examples[:count])
  ids, mask = left_pad_prompts(prompts, lab.task.prompt_length, lab.tokenizer.pad_token_id)
  seen = set()
  for point in points:
    if point["family"] in seen or point.get("policy") is not None:
      continue
    seen.add(point["family"])
    tokens = []
    for seed in (0, 1):
      keys = jax.random.split(jax.random.key(seed), count)
      tokens.append(np.asarray(generate(lab.model, ids, point["config"], keys, mask).tokens))
    if not np.array_equal(*tokens):
      raise SystemExit(f"{point['label']}: tokens depend on the key; run it over --seeds.")
    print(f"key check: {point['label']} decodes the first {count} chains to the same tokens "
          "under keys 0 and 1", flush=True)


def compare(policy: dict[str, Any], threshold: list[dict[str, Any]]) -> dict[str, Any]:
  """The policy point against the threshold front (see the module docstring)."""
  front = sorted(threshold, key=lambda p: p["mean_nfe"])
  nfe, acc = upper_envelope(front)
  out: dict[str, Any] = {"label": policy["label"], "accuracy": policy["accuracy"],
                         "mean_nfe": policy["mean_nfe"], "front_acc_at_nfe": None}
  if nfe[0] <= policy["mean_nfe"] <= nfe[-1]:
    out["front_acc_at_nfe"] = float(np.interp(policy["mean_nfe"], nfe, acc))
  nearest = min(front, key=lambda p: abs(p["mean_nfe"] - policy["mean_nfe"]))
  d, lo, hi = paired_bootstrap(policy["per_chain"], nearest["per_chain"])
  out["nearest"] = {"label": nearest["label"], "mean_nfe": nearest["mean_nfe"],
                    "accuracy": nearest["accuracy"], "diff": d, "ci95": [lo, hi]}
  above = [p for p in front if p["mean_nfe"] >= policy["mean_nfe"]]
  out["higher_at_no_more_nfe"] = None
  if above:
    p = above[0]
    d, lo, hi = paired_bootstrap(policy["per_chain"], p["per_chain"])
    out["higher_at_no_more_nfe"] = {"against": p["label"], "mean_nfe": p["mean_nfe"],
                                    "diff": d, "ci95": [lo, hi], "holds": lo > 0}
  # Only inside the front's accuracy range: a point no better than the front's worst (e.g. 0%
  # at 1 NFE against 0.4% at 9 NFE) is not "as accurate at fewer NFE", it is off the front.
  in_range = policy["accuracy"] > min(p["accuracy"] for p in front) + 0.01
  cheaper = [p for p in front if in_range and p["mean_nfe"] >= 1.25 * policy["mean_nfe"]
             and p["accuracy"] <= policy["accuracy"] + 0.01]
  out["fewer_nfe_at_accuracy"] = (
      {"against": cheaper[-1]["label"], "mean_nfe": cheaper[-1]["mean_nfe"],
       "accuracy": cheaper[-1]["accuracy"], "holds": True} if cheaper else {"holds": False})
  out["above_front"] = bool((out["higher_at_no_more_nfe"] or {}).get("holds")
                            or out["fewer_nfe_at_accuracy"]["holds"])
  return out


def contrast(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
  """Two points on the same chains, paired: accuracy and NFE differences (a - b), each with a
  bootstrap interval over chains (per-chain means over each point's seeds)."""
  acc = paired_bootstrap(a["per_chain"], b["per_chain"])
  nfe = paired_bootstrap(a["per_chain_nfe"], b["per_chain_nfe"])
  return {"a": a["label"], "b": b["label"], "accuracy": [a["accuracy"], b["accuracy"]],
          "mean_nfe": [a["mean_nfe"], b["mean_nfe"]], "accuracy_diff": acc[0],
          "accuracy_ci95": list(acc[1:]), "nfe_diff": nfe[0], "nfe_ci95": list(nfe[1:])}


def plot(points: list[dict[str, Any]], path: Path, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 5), dpi=130)
  families: dict[str, list[dict[str, Any]]] = {}
  for p in points:
    families.setdefault(p["family"], []).append(p)
  extra = iter(["C3", "C4", "C5", "C6", "C7"])
  for family, members in families.items():
    members = sorted(members, key=lambda p: p["mean_nfe"])
    color, marker = STYLE.get(family) or (next(extra, "k"), "*")
    x = [p["mean_nfe"] for p in members]
    y = [100 * p["accuracy"] for p in members]
    # Clipped at 0: at 0% accuracy the Wilson bound can lie a rounding error above it.
    err = [[max(0.0, 100 * (p["accuracy"] - p["ci95"][0])) for p in members],
           [max(0.0, 100 * (p["ci95"][1] - p["accuracy"])) for p in members]]
    ax.errorbar(x, y, yerr=err, fmt=marker + "-", color=color, capsize=2, lw=1,
                ms=9 if marker == "*" else 5, label=family)
  ax.set_xscale("log")
  ax.set_xlabel("mean NFE per chain (log scale)")
  ax.set_ylabel("accuracy, % (Wilson 95% interval)")
  ax.grid(alpha=0.3, which="both")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def markdown(points: list[dict[str, Any]], comparisons: list[dict[str, Any]], command: str,
             contrasts: list[dict[str, Any]] = ()) -> str:
  lines = [f"`{command}`", "",
           "| family | setting | n | accuracy | Wilson 95% | NFE | forward tokens | decode s |",
           "|---|---|---|---|---|---|---|---|"]
  for p in sorted(points, key=lambda p: (p["family"], p["mean_nfe"])):
    lines.append(f"| {p['family']} | {p['label']} | {p['n']} | {100 * p['accuracy']:.1f} | "
                 f"[{100 * p['ci95'][0]:.1f}, {100 * p['ci95'][1]:.1f}] | {p['mean_nfe']:.1f} | "
                 f"{'-' if p['mean_forward_tokens'] is None else round(p['mean_forward_tokens'])}"
                 f" | {p['decode_s']:.0f} |")
  if comparisons:
    lines += ["", "| point | accuracy | NFE | threshold front at this NFE | nearest-NFE "
              "threshold: diff [95% CI] | vs the cheapest threshold with >= NFE | above the "
              "front? |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
      near = c["nearest"]
      front = "-" if c["front_acc_at_nfe"] is None else f"{100 * c['front_acc_at_nfe']:.1f}"
      more = c["higher_at_no_more_nfe"]
      more_text = "-" if more is None else (
          f"{100 * more['diff']:+.1f} [{100 * more['ci95'][0]:+.1f}, "
          f"{100 * more['ci95'][1]:+.1f}] vs {more['against']} (NFE {more['mean_nfe']:.1f})")
      lines.append(
          f"| {c['label']} | {100 * c['accuracy']:.1f} | {c['mean_nfe']:.1f} | {front} | "
          f"{100 * near['diff']:+.1f} [{100 * near['ci95'][0]:+.1f}, {100 * near['ci95'][1]:+.1f}]"
          f" vs {near['label']} (NFE {near['mean_nfe']:.1f}) | {more_text} | "
          f"{'yes' if c['above_front'] else 'no'} |")
  if contrasts:
    lines += ["", "| a | b | accuracy a / b | a - b [95% CI] | NFE a / b | NFE a - b [95% CI] |",
              "|---|---|---|---|---|---|"]
    for c in contrasts:
      lines.append(
          f"| {c['a']} | {c['b']} | {100 * c['accuracy'][0]:.1f} / {100 * c['accuracy'][1]:.1f}"
          f" | {100 * c['accuracy_diff']:+.1f} [{100 * c['accuracy_ci95'][0]:+.1f}, "
          f"{100 * c['accuracy_ci95'][1]:+.1f}] | {c['mean_nfe'][0]:.1f} / {c['mean_nfe'][1]:.1f}"
          f" | {c['nfe_diff']:+.1f} [{c['nfe_ci95'][0]:+.1f}, {c['nfe_ci95'][1]:+.1f}] |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--setting", choices=sorted(SETTINGS), default="full")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--policy", action="append", default=[], metavar="LABEL=DIR")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--betas", type=float, nargs="*", default=list(BETAS))
  parser.add_argument("--deterministic-only", action="store_true",
                      help="only the policies' deterministic mode")
  parser.add_argument("--taus", type=float, nargs="*", default=list(TAUS))
  parser.add_argument("--gammas", type=float, nargs="*", default=list(GAMMAS))
  parser.add_argument("--tokens-per-step", type=int, nargs="*", default=list(TOKENS_PER_STEP))
  parser.add_argument("--policy-lookum", action="store_true",
                      help="also each policy inside LookUM (K = 2, draws at T = 1, committed "
                      "scope) and its random-pick control")
  parser.add_argument("--new-samplers", action="store_true",
                      help="also KLASS, PC-Sampler, Prophet and DUS (issue 23)")
  parser.add_argument("--prophet-scales", type=float, nargs="*", default=[1.0],
                      help="Prophet's gap thresholds, as multiples of the authors' (1 token a "
                      "step: each point costs up to 128 NFE)")
  parser.add_argument("--only", nargs="*", default=None,
                      help="evaluate only these labels now (the report reads whatever is stored)")
  parser.add_argument("--report", default=None, metavar="NAME",
                      help="write the tables and plot as OUT/NAME.{md,json,csv,png} (default: "
                      "results.{md,json,csv} and accuracy_vs_nfe.png), e.g. one report per "
                      "question from the same stored settings")
  parser.add_argument("--contrast", nargs=2, action="append", default=[], metavar="LABEL",
                      help="pair two evaluated points on the same chains (accuracy and NFE, "
                      "a - b), e.g. two policies' deterministic modes; repeatable")
  parser.add_argument("--check-keys", type=int, default=0, metavar="N")
  parser.add_argument("--batch-size", type=int, default=250)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  for item in args.policy:
    if "=" not in item or not Path(item.partition("=")[2]).is_dir():
      parser.error(f"--policy {item!r}: expected LABEL=DIR with DIR a policy directory.")

  out = Path(args.out)
  (out / "settings").mkdir(parents=True, exist_ok=True)
  lab = open_task_model(args.model, limit=args.limit)
  gen_length = lab.gen_length
  block_length = SETTINGS[args.setting][0] or gen_length
  identity = lab_identity(lab)
  points = line_up(args, gen_length, block_length)
  labels = [p["label"] for p in points]
  for pair in args.contrast:
    for label in pair:
      if label not in labels:
        parser.error(f"--contrast {label!r}: not a point of this line-up; its points are "
                     f"{labels}.")
  if args.check_keys:
    check_keys(lab, points, args.check_keys, args.batch_size)

  results = []
  for point in points:
    stored = out / "settings" / f"{file_name(point['label'])}.json"
    if args.only is not None and point["label"] not in args.only:
      if not stored.is_file():
        continue
    start = time.perf_counter()
    r = run_point(lab, identity, point, out, args.batch_size)
    results.append(r)
    print(f"{r['label']:<36} acc {100 * r['accuracy']:5.1f} [{100 * r['ci95'][0]:.1f}, "
          f"{100 * r['ci95'][1]:.1f}] NFE {r['mean_nfe']:6.1f} n {r['n']} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)

  threshold = [r for r in results if r["family"] == "threshold"]
  comparisons = [compare(r, threshold) for r in results
                 if r["family"] != "threshold" and len(threshold) >= 2]
  by_label = {r["label"]: r for r in results}
  missing = [label for pair in args.contrast for label in pair if label not in by_label]
  if missing:
    raise SystemExit(f"--contrast: {missing} not evaluated or stored; drop them from --only.")
  contrasts = [contrast(by_label[a], by_label[b]) for a, b in args.contrast]
  command = "python experiments/chain_fronts.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
  where = ("full diffusion (block 128), prefix cache" if args.setting == "full"
           else "blocks of 32, dual cache")
  title = f"{args.model}, {len(lab.examples)} held-out chains, {where}"
  name = args.report or "results"
  plot(results, out / (f"{args.report}.png" if args.report else "accuracy_vs_nfe.png"), title)
  (out / f"{name}.md").write_text(markdown(results, comparisons, command, contrasts))
  public = [{k: v for k, v in r.items() if not k.startswith("per_chain")} for r in results]
  (out / f"{name}.json").write_text(json.dumps(
      {"command": command, "points": public, "comparisons": comparisons,
       "contrasts": contrasts}, indent=1) + "\n")
  with open(out / f"{name}.csv", "w") as f:
    f.write("family,label,n,accuracy,ci_low,ci_high,mean_nfe\n")
    for r in public:
      f.write(f"{r['family']},{r['label']},{r['n']},{r['accuracy']:.4f},{r['ci95'][0]:.4f},"
              f"{r['ci95'][1]:.4f},{r['mean_nfe']:.3f}\n")
  for c in comparisons:
    near = c["nearest"]
    print(f"{c['label']}: {100 * near['diff']:+.1f} [{100 * near['ci95'][0]:+.1f}, "
          f"{100 * near['ci95'][1]:+.1f}] vs {near['label']}; above the front: "
          f"{c['above_front']}")
  for c in contrasts:
    print(f"{c['a']} - {c['b']}: accuracy {100 * c['accuracy_diff']:+.1f} "
          f"[{100 * c['accuracy_ci95'][0]:+.1f}, {100 * c['accuracy_ci95'][1]:+.1f}], NFE "
          f"{c['nfe_diff']:+.1f} [{c['nfe_ci95'][0]:+.1f}, {c['nfe_ci95'][1]:+.1f}]")
  print(f"wrote {out}/{name}.md, .json, .csv and the plot")
  return 0


if __name__ == "__main__":
  sys.exit(main())

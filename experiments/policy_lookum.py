"""Policy + LookUM: the learned policy proposes K candidate sets, the verifier selects one.

No paper reports this combination. On a toy model's held-out set it evaluates the policy alone
(deterministic), `policy_lookum` over K, the draws' temperature (softer draws give the
verifier more diverse candidates) and the verifier scope, a control that picks a candidate
uniformly at random (selection_temperature = 1e6: any gain of the verifier over it is the
verifier's), and the confidence threshold at matching NFE for reference.

    python experiments/policy_lookum.py --model toy-sudoku \
        --policy lookum_jax/assets/toy-sudoku/policy --limit 500 \
        --out experiments/results/policy_lookum

Writes OUT/results.json (with per-problem correctness), results.csv and accuracy_vs_nfe.png;
a rerun evaluates only the rows whose setting changed: a row is reused when its fingerprint
(the whole sampler, the model's and policy's files, the problems, the seed;
`lookum_jax.studies`) matches.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import jax

import policy_rl
from lookum_jax.evaluation import EvalResult, evaluate, format_table
from lookum_jax.fingerprint import fingerprint
from lookum_jax.plotting import plot_accuracy_vs_nfe
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.studies import directory_fingerprint, lab_identity, setting_key
from lookum_jax.toylab import open_task_model


def line_up(gen_length: int, block_length: int, features: tuple[str, ...],
            paths: list[int], temperatures: list[float], scopes: list[str],
            taus: list[float]) -> list[tuple[str, SamplerConfig]]:
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  out = [("policy deterministic", base.replace(
      strategy=policy_rl.Policy(mode="deterministic", features=features)))]
  for k in paths:
    for temperature in temperatures:
      for scope in scopes:
        strategy = policy_rl.PolicyLookUM(paths=k, temperature=temperature,
                                          verifier_scope=scope, features=features)
        out.append((f"policy_lookum K={k} T={temperature:g} {scope}",
                    base.replace(strategy=strategy)))
      # The control: the same candidates, one picked uniformly at random.
      out.append((f"policy_lookum K={k} T={temperature:g} random pick", base.replace(
          strategy=policy_rl.PolicyLookUM(paths=k, temperature=temperature, features=features,
                                          selection_temperature=1e6))))
  for tau in taus:
    out.append((f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau))))
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--policy", required=True, help="a trained policy directory")
  parser.add_argument("--limit", type=int, default=500, help="held-out problems")
  parser.add_argument("--block-length", type=int,
                      help="semi-AR block (default: the model's task setting)")
  parser.add_argument("--paths", type=int, nargs="+", default=[2, 3])
  parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0],
                      help="policy temperatures of the K-1 drawn candidates")
  parser.add_argument("--scopes", nargs="+", default=["common", "response", "committed"])
  parser.add_argument("--taus", type=float, nargs="+", default=[0.925, 0.95, 0.99, 0.999])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)

  lab = open_task_model(args.model, task_name=None, task_options={}, data=None, limit=args.limit)
  gen_length = lab.spec.gen_length if lab.spec else lab.task.gen_length
  block_length = args.block_length or (lab.spec.block_length if lab.spec else gen_length)
  policy = policy_rl.load_policy(args.policy)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results_path = out / "results.json"
  setup = {"model": args.model, "policy": args.policy, "limit": args.limit,
           "block_length": block_length, "seed": args.seed}
  saved = json.loads(results_path.read_text()) if results_path.exists() else {}
  done = saved.get("results", {})
  # A stored row is reused only under its setting's fingerprint (the whole sampler, the
  # model's and the policy's files, the problems, the seed): a changed default re-runs.
  identity = lab_identity(lab)
  policy_files = directory_fingerprint(args.policy)

  def write() -> None:
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"setup": setup, "results": done}, indent=1, default=str))
    tmp.replace(results_path)

  results = []
  for label, config in line_up(gen_length, block_length, policy.config.features, args.paths,
                               args.temperatures, args.scopes, args.taus):
    reads_policy = config.strategy.needs_policy
    key = setting_key(config, **identity, seeds=[args.seed], n=len(lab.examples),
                      policy=policy_files if reads_policy else None)
    if done.get(label, {}).get("fingerprint") != fingerprint(key):
      bound = config.with_policy(policy) if reads_policy else config
      result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, bound,
                        jax.random.key(args.seed), batch_size=args.batch_size, label=label)
      summary = result.summary()
      summary["correct_bits"] = "".join("1" if r["correct"] else "0" for r in result.records)
      summary["fingerprint"] = fingerprint(key)
      done[label] = summary
      write()
    results.append(done[label])
    r = done[label]
    print(f"  {label:45s} acc {r['accuracy']:.3f} NFE {r['mean_nfe']:.2f}", flush=True)

  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["label", "n", "accuracy", "ci_low", "ci_high", "mean_nfe", "mean_steps"])
    for r in results:
      writer.writerow([r["label"], r["n"], f"{r['accuracy']:.4f}", f"{r['ci95'][0]:.4f}",
                       f"{r['ci95'][1]:.4f}", f"{r['mean_nfe']:.3f}", f"{r['mean_steps']:.3f}"])
  as_results = [EvalResult(**{k: v for k, v in r.items()
                              if k not in ("correct_bits", "fingerprint")}) for r in results]
  print(format_table(as_results))
  plot_accuracy_vs_nfe(as_results, out / "accuracy_vs_nfe.png",
                       title=f"{args.model}: learned policy + LookUM verifier "
                       f"({args.limit} problems)")
  print(f"wrote {out}/results.json, results.csv, accuracy_vs_nfe.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())

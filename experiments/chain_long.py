"""Chains longer than toy-chain was trained on (issue 22, item 4): does the model extrapolate?

toy-chain learned 42-step chains (128-token answers after 262-token prompts) in a 512-token
context. A chain of `--num-steps` 84 has a 256-token answer after a 514-token prompt: the
engine refuses it against the model's context (the refusal is recorded as a measurement).
The model has no learned positions (RoPE), so the limit can be lifted: the model is loaded
again from a copy of its directory whose config.json sets max_sequence_length to `--context`,
and `--n` fresh 84-step chains (the chain task's generator under `--seed`; training only ever
drew 42-step chains, so none of them was trained on) are decoded under full diffusion (one
block) with the prefix cache, by the confidence threshold at each `--taus` and each
`--policy LABEL=DIR` (deterministic mode). Besides the exact-match accuracy it reports the
per-step accuracy over the first and the last `num_steps / 2` steps, and the number of leading
steps right: a model that decodes the trained length but not beyond shows it there.

A control decodes the first `--control` held-out 42-step chains with the lifted model (their
512-token context was never the limit), at the first tau.

    PYTHONPATH=experiments:. python experiments/chain_long.py --n 100 --taus 0.9 \\
        --policy chain=lookum_jax/assets/toy-chain/policy --out experiments/results/chain/long
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

import policy_rl
from lookum_jax.evaluation import evaluate, wilson_interval
from lookum_jax.loading import load_model, resolve_path
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.sampling.loop import check_generation
from lookum_jax.tasks.base import write_jsonl
from lookum_jax.toylab import open_task_model

# Not a training seed (those come from step_seed) nor toy-chain's held-out seed.
LONG_SEED = 84_084_084


def lifted_model(model_dir: Path, context: int, scratch: Path) -> Any:
  """The model of `model_dir` with its context raised to `context` tokens: a copy of the
  directory (params linked, not copied) whose config.json says so."""
  copy = scratch / "model"
  copy.mkdir()
  for item in model_dir.iterdir():
    if item.name == "config.json":
      config = json.loads(item.read_text())
      config["max_sequence_length"] = context
      (copy / item.name).write_text(json.dumps(config, indent=1))
    elif item.name == "params":
      (copy / item.name).symlink_to(item.resolve(), target_is_directory=True)
    elif item.is_file():
      shutil.copy(item, copy / item.name)
  return load_model(copy)


def leading_steps(task, example: dict[str, Any], response: str) -> int:
  """How many steps the response gets right before its first wrong one."""
  steps, _ = task.parse_response(response)
  count = 0
  for got, want in zip(steps, task.expected_steps(example), strict=False):
    if got != want:
      break
    count += 1
  return count


def half_accuracy(task, example: dict[str, Any], response: str) -> tuple[float, float]:
  """Per-step accuracy over the first and the second half of the chain's steps."""
  steps, _ = task.parse_response(response)
  expected = task.expected_steps(example)
  right = [i < len(steps) and steps[i] == want for i, want in enumerate(expected)]
  half = len(expected) // 2
  return float(np.mean(right[:half])), float(np.mean(right[half:]))


def summarize(task, examples, result) -> dict[str, Any]:
  records = result.records
  lead = [leading_steps(task, e, r["response"]) for e, r in zip(examples, records, strict=True)]
  halves = np.array([half_accuracy(task, e, r["response"])
                     for e, r in zip(examples, records, strict=True)])
  final = [task.final_correct(e, r["response"]) for e, r in zip(examples, records, strict=True)]
  lo, hi = wilson_interval(result.correct, result.n)
  return {"label": result.label, "n": result.n, "accuracy": result.accuracy, "ci95": [lo, hi],
          "final_answer_accuracy": float(np.mean(final)), "mean_nfe": result.mean_nfe,
          "step_accuracy_first_half": float(halves[:, 0].mean()),
          "step_accuracy_second_half": float(halves[:, 1].mean()),
          "mean_leading_steps": float(np.mean(lead)), "median_leading_steps": float(
              np.median(lead)), "num_steps": task.num_steps, "wall_time_s": result.wall_time_s,
          "example_response": records[0]["response"],
          "example_target": task.target_text(examples[0])}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--num-steps", type=int, default=84)
  parser.add_argument("--n", type=int, default=100)
  parser.add_argument("--seed", type=int, default=LONG_SEED, help="the chains' generator seed")
  parser.add_argument("--context", type=int, default=1024)
  parser.add_argument("--taus", type=float, nargs="+", default=[0.9])
  parser.add_argument("--policy", action="append", default=[], metavar="LABEL=DIR")
  parser.add_argument("--control", type=int, default=100,
                      help="held-out 42-step chains decoded with the lifted model (0: none)")
  parser.add_argument("--batch-size", type=int, default=50)
  parser.add_argument("--out", default="experiments/results/chain/long")
  args = parser.parse_args(argv)

  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  lab = open_task_model(args.model, limit=max(args.control, 1))
  task = dataclasses.replace(lab.task, num_steps=args.num_steps)
  examples = task.generate(args.n, args.seed)
  write_jsonl(examples, out / f"chains{args.num_steps}.jsonl")
  gen_length = task.gen_length
  base = SamplerConfig(gen_length=gen_length, block_length=gen_length, steps=gen_length,
                       cache="prefix")
  report: dict[str, Any] = {
      "model": args.model, "num_steps": args.num_steps, "prompt_length": task.prompt_length,
      "gen_length": gen_length, "seed": args.seed, "n": args.n,
      "context": lab.model.config.max_sequence_length, "lifted_context": args.context}
  try:
    check_generation(lab.model, base.replace(strategy=Threshold(tau=args.taus[0])),
                     (1, task.prompt_length))
    report["refusal"] = None
  except ValueError as error:
    report["refusal"] = str(error)
  print(f"unlifted {args.model}: {report['refusal']}", flush=True)

  points = [(f"threshold tau={tau:g}", base.replace(strategy=Threshold(tau=tau)))
            for tau in args.taus]
  for item in args.policy:
    name, _, directory = item.partition("=")
    policy = policy_rl.load_policy(directory)
    strategy = policy_rl.Policy(mode="deterministic", features=policy.config.features)
    points.append((f"policy {name} deterministic",
                   base.replace(strategy=strategy).with_policy(policy)))
  report["points"] = []
  with tempfile.TemporaryDirectory() as scratch:
    model = lifted_model(resolve_path(args.model), args.context, Path(scratch))
    for label, config in points:
      result = evaluate(model, lab.tokenizer, task, examples, config, jax.random.key(0),
                        batch_size=args.batch_size, label=label, progress=False)
      row = summarize(task, examples, result)
      report["points"].append(row)
      print(f"{label}: acc {row['accuracy']:.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}] "
            f"final {row['final_answer_accuracy']:.3f} NFE {row['mean_nfe']:.1f} step acc "
            f"{row['step_accuracy_first_half']:.3f} / {row['step_accuracy_second_half']:.3f} "
            f"leading steps {row['mean_leading_steps']:.1f} ({row['wall_time_s']:.0f} s)",
            flush=True)
      (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.control:
      short = lab.examples[:args.control]
      config = SamplerConfig(gen_length=lab.gen_length, block_length=lab.gen_length,
                             steps=lab.gen_length, cache="prefix",
                             strategy=Threshold(tau=args.taus[0]))
      result = evaluate(model, lab.tokenizer, lab.task, short, config, jax.random.key(0),
                        batch_size=args.batch_size, label=points[0][0], progress=False)
      report["control"] = summarize(lab.task, short, result)
      c = report["control"]
      print(f"control, {len(short)} held-out {lab.task.num_steps}-step chains, lifted model, "
            f"{c['label']}: acc {c['accuracy']:.3f} NFE {c['mean_nfe']:.1f} step acc "
            f"{c['step_accuracy_first_half']:.3f} / {c['step_accuracy_second_half']:.3f}",
            flush=True)
  (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
  print(f"wrote {out}/results.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())

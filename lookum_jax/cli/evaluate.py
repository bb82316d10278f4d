"""`lookum eval` and `lookum demo`: samplers scored on a toy model's verifiable task."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lookum_jax.cli.cachecost import cache_warning
from lookum_jax.cli.journal import Journal, model_identity
from lookum_jax.cli.outputs import probe_file, probe_folder, write_atomically
from lookum_jax.cli.provenance import label_for, provenance
from lookum_jax.configfile import parse_key_values

DEFAULT_MODEL = "toy-sudoku"


def _add_task_model_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--model", default=DEFAULT_MODEL,
                      help=f"a shipped toy model name or a model directory "
                      f"(default {DEFAULT_MODEL})")
  parser.add_argument("--task", help="task name (default: the model's task.json)")
  parser.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                      help="task option, e.g. size=6 (repeatable)")
  parser.add_argument("--data", help="held-out examples as JSONL in the task's format")
  parser.add_argument("--limit", type=int, help="evaluate the first N examples")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-progress", action="store_true")


HELP = {"eval": "score one sampler on a task's held-out set",
        "demo": "every sampler side by side on the embedded toy model"}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
  from lookum_jax.cli import sampler_args

  ev = subparsers.add_parser(
      "eval", help=HELP["eval"],
      description="Accuracy (95% Wilson interval), mean NFE, token error rate and wall "
      "time of one sampler; writes a JSON record.")
  _add_task_model_arguments(ev)
  sampler_args.add_sampler_arguments(ev, gen_length=None, block_length=None)
  ev.add_argument("--out", help="JSON record path (default: print only)")
  ev.set_defaults(func=run_eval)

  demo = subparsers.add_parser(
      "demo", help=HELP["demo"],
      description="Runs the baseline samplers, LookUM and (if shipped) the learned policy on "
      "a toy model's held-out set; prints a table and saves an accuracy-vs-NFE plot.")
  _add_task_model_arguments(demo)
  demo.add_argument("--out-dir", default="lookum_demo",
                    help="where results.json, results.csv and accuracy_vs_nfe.png go")
  demo.set_defaults(func=run_demo, limit=200)


def _open_task_model(args: argparse.Namespace):
  from lookum_jax.toylab import open_task_model

  return open_task_model(args.model, args.task,
                         parse_key_values(args.task_option, "--task-option"), args.data,
                         args.limit)


def prepare_out_path(path: str) -> None:
  """Checks `--out` by a real write before any model is loaded (creating its folder), so
  that a bad path does not lose a finished evaluation."""
  probe_file(path, "--out")


def run_eval(args: argparse.Namespace) -> int:
  import jax

  from lookum_jax.cli import sampler_args
  from lookum_jax.evaluation import evaluate, format_table, sampler_summary

  if args.out:
    prepare_out_path(args.out)
  opened = _open_task_model(args)
  if args.gen_length is None:
    args.gen_length = opened.gen_length
  if args.block_length is None:
    args.block_length = opened.spec.block_length if opened.spec else args.gen_length
  config = sampler_args.sampler_config_from_args(args)
  warning = cache_warning(opened.model_dir.name, opened.spec and opened.spec.cache_cost,
                          config.cache.name, config.cache_refresh)
  if warning:
    print(warning, file=sys.stderr, flush=True)
  policy = sampler_args.load_strategy_policy(config.strategy, args.policy)
  if policy is not None:
    config = config.with_policy(policy)
  journal, done = None, {}
  if args.out:
    run = {"sampler": sampler_summary(config), "model": model_identity(opened.model_dir),
           "task": opened.task.name, "task_options": args.task_option, "seed": args.seed,
           "policy": str(Path(args.policy).absolute()) if policy is not None else None}
    journal = Journal(args.out, run, opened.examples)
    done = journal.load()
    if done:
      print(f"resuming: {len(done)} of {len(opened.examples)} problems already done "
            f"({journal.path})", flush=True)
  try:
    result = evaluate(opened.model, opened.tokenizer, opened.task, opened.examples, config,
                      jax.random.key(args.seed), batch_size=args.batch_size,
                      progress=not args.no_progress, done=done,
                      on_records=journal.append if journal else None,
                      label=label_for(config, args.policy if policy is not None else None))
  except KeyboardInterrupt:
    if journal is None:
      print("\ninterrupted: nothing saved (pass --out FILE to make a run resumable).",
            file=sys.stderr)
    else:
      print(f"\ninterrupted: {journal.saved} of {len(opened.examples)} problems saved in "
            f"{journal.path}; rerun the same command to resume.", file=sys.stderr)
    return 130
  result.provenance = provenance(
      model_dir=opened.model_dir, data=args.data,
      heldout=opened.spec.heldout if opened.spec and not args.data else None, seed=args.seed,
      limit=args.limit, policy=args.policy if policy is not None else None,
      command=["lookum", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("lookum") else None)
  print(format_table([result]))
  if args.out:
    result.to_json(args.out)
    journal.finish()
    print(f"wrote {args.out}")
  return 0


def demo_samplers(gen_length: int, block_length: int) -> list[tuple[str, Any]]:
  """The demo's line-up (label, SamplerConfig): each baseline, LookUM, at one and several
  tokens per step."""
  from lookum_jax.sampling.config import SamplerConfig
  from lookum_jax.sampling.lookum import LookUM
  from lookum_jax.sampling.strategies import (
    Entropy,
    EntropyBounded,
    Margin,
    RandomOrder,
    Threshold,
  )
  from lookum_jax.sampling.strategies.dus import DUS
  from lookum_jax.sampling.strategies.klass import KLASS
  from lookum_jax.sampling.strategies.pc_sampler import PCSampler
  from lookum_jax.sampling.strategies.prophet import Prophet

  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  num_blocks = gen_length // block_length
  # Steps for about 2 and 4 tokens per step, kept multiples of the number of blocks.
  half = num_blocks * max(1, gen_length // 2 // num_blocks)
  quarter = num_blocks * max(1, gen_length // 4 // num_blocks)
  return [
      ("low_confidence 1/step", base),
      ("low_confidence 2/step", base.replace(steps=half)),
      ("low_confidence 4/step", base.replace(steps=quarter)),
      ("margin 2/step", base.replace(steps=half, strategy=Margin())),
      ("entropy 2/step", base.replace(steps=half, strategy=Entropy())),
      ("random 1/step", base.replace(strategy=RandomOrder())),
      ("threshold tau=0.9", base.replace(strategy=Threshold(tau=0.9))),
      ("threshold tau=0.7", base.replace(strategy=Threshold(tau=0.7))),
      ("entropy_bounded g=0.1", base.replace(strategy=EntropyBounded(gamma=0.1))),
      ("entropy_bounded g=1", base.replace(strategy=EntropyBounded(gamma=1.0))),
      ("lookum K=2 2/step", base.replace(steps=half, strategy=LookUM(paths=2))),
      ("lookum K=2 2/step paper", base.replace(steps=half, strategy=LookUM.paper(paths=2))),
      ("klass conf=0.6 kl=0.015", base.replace(strategy=KLASS(conf_threshold=0.6,
                                                               kl_threshold=0.015))),
      ("prophet 1/step", base.replace(strategy=Prophet())),
      ("pc_sampler 2/step", base.replace(steps=half, strategy=PCSampler())),
      ("dus base=2", base.replace(strategy=DUS(base=2))),
  ]


def run_demo(args: argparse.Namespace) -> int:
  import jax

  from lookum_jax.cli import sampler_args
  from lookum_jax.evaluation import EvalResult, evaluate, format_table
  from lookum_jax.parsing import parse_strategy
  from lookum_jax.plotting import plot_accuracy_vs_nfe
  from lookum_jax.sampling.config import SamplerConfig

  t0 = time.perf_counter()
  out_dir = Path(args.out_dir)
  probe_folder(out_dir, "--out-dir", args.out_dir)  # before any model: a bad one loses nothing
  opened = _open_task_model(args)
  gen_length, block_length = opened.gen_length, opened.block_length
  line_up = demo_samplers(gen_length, block_length)
  policy_dir = opened.model_dir / "policy"
  if policy_dir.is_dir():
    policy = sampler_args.load_strategy_policy(parse_strategy("policy"), str(policy_dir))
    strategy = parse_strategy("policy", {"mode": "deterministic",
                                         "features": policy.config.features})
    base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
    line_up.append(("learned policy", base.replace(strategy=strategy.with_policy(policy))))
  print(f"{opened.task.name}: {len(opened.examples)} held-out problems, model "
        f"{opened.model_dir.name}, gen_length {gen_length}, block_length {block_length}")
  results: list[EvalResult] = []
  print(format_table([]), flush=True)  # the header; each row follows as its sampler finishes
  for label, config in line_up:
    results.append(evaluate(
        opened.model, opened.tokenizer, opened.task, opened.examples, config,
        jax.random.key(args.seed), batch_size=args.batch_size, label=label,
        progress=not args.no_progress))
    print(format_table(results[-1:]).splitlines()[-1], flush=True)
  facts = provenance(model_dir=opened.model_dir, data=args.data,
                     heldout=opened.spec.heldout if opened.spec and not args.data else None,
                     seed=args.seed, limit=args.limit,
                     policy=str(policy_dir) if policy_dir.is_dir() else None)
  for r in results:
    r.provenance = facts
  write_atomically(out_dir / "results.json",
                   json.dumps([r.summary() for r in results], indent=1, default=str))
  csv = ["sampler,accuracy,ci_low,ci_high,mean_nfe,mean_steps,token_error_rate,wall_s\n"]
  for r in results:
    ter = "" if r.token_error_rate is None else f"{r.token_error_rate:.5f}"
    csv.append(f"{r.label},{r.accuracy:.4f},{r.ci95[0]:.4f},{r.ci95[1]:.4f},{r.mean_nfe:.2f},"
               f"{r.mean_steps:.2f},{ter},{r.wall_time_s:.2f}\n")
  write_atomically(out_dir / "results.csv", "".join(csv))
  title = f"{opened.model_dir.name}: {opened.task.name}, {len(opened.examples)} problems"
  plot_accuracy_vs_nfe(results, out_dir / "accuracy_vs_nfe.png", title=title)
  print(f"\nwrote {out_dir}/results.json, results.csv, accuracy_vs_nfe.png and .pdf "
        f"({time.perf_counter() - t0:.0f} s in all)")
  return 0

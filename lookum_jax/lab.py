"""`lookum eval` and `lookum demo`: samplers scored on the toy lab's verifiable tasks.

A toy model directory (shipped ones live in `lookum_jax/assets/<name>/`) carries a
`task.json` naming its task, the task's options, the decoding lengths it was trained
for and its held-out set, so `lookum eval --model toy-sudoku` needs nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax

from lookum_jax import cli_args
from lookum_jax.evaluation import EvalResult, evaluate, format_table
from lookum_jax.loading import load_model, load_tokenizer, resolve_path
from lookum_jax.sampling import SamplerConfig
from lookum_jax.tasks import Task, get_task

TASK_FILE = "task.json"
DEFAULT_MODEL = "toy-sudoku"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What `task.json` in a toy model directory says."""

  task: str
  options: dict[str, Any]
  gen_length: int
  block_length: int
  heldout: str | None = None  # file name inside the model directory

  def make_task(self) -> Task:
    return get_task(self.task, **self.options)


def read_task_spec(model_dir: Path) -> TaskSpec | None:
  path = model_dir / TASK_FILE
  if not path.is_file():
    return None
  try:
    return TaskSpec(**json.loads(path.read_text()))
  except (TypeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is not a valid task spec: {e}") from e


def write_task_spec(model_dir: str | os.PathLike, spec: TaskSpec) -> None:
  Path(model_dir, TASK_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=1) + "\n")


@dataclasses.dataclass
class Lab:
  """A loaded model with its tokenizer, task and examples."""

  model: Any
  tokenizer: Any
  task: Task
  examples: list[dict[str, Any]]
  spec: TaskSpec | None
  model_dir: Path


def open_lab(model: str, task_name: str | None = None, task_options: dict | None = None,
             data: str | None = None, limit: int | None = None) -> Lab:
  """Loads the model and picks the task (flag, else `task.json`) and the examples
  (`--data`, else the model's held-out set)."""
  model_dir = resolve_path(model)
  spec = read_task_spec(model_dir)
  if task_name is not None:
    task = get_task(task_name, **(task_options or {}))
  elif spec is not None:
    task = spec.make_task()
  else:
    raise ValueError(f"{model_dir} has no {TASK_FILE}; pass --task NAME.")
  if data is not None:
    examples = task.parse_jsonl(data)
  elif spec is not None and spec.heldout and (model_dir / spec.heldout).is_file():
    examples = task.parse_jsonl(model_dir / spec.heldout)
  else:
    raise ValueError(f"no examples: pass --data FILE.jsonl ({model_dir} ships no held-out set).")
  if limit is not None:
    if limit <= 0:
      raise ValueError(f"--limit must be positive, got {limit}.")
    examples = examples[:limit]
  return Lab(model=load_model(model_dir), tokenizer=load_tokenizer(model_dir), task=task,
             examples=examples, spec=spec, model_dir=model_dir)


def _add_common(parser: argparse.ArgumentParser) -> None:
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


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
  ev = subparsers.add_parser(
      "eval", help="score one sampler on a task's held-out set",
      description="Accuracy (95% Wilson interval), mean NFE, token error rate and wall "
      "time of one sampler; writes a JSON record.")
  _add_common(ev)
  cli_args.add_sampler_arguments(ev, gen_length=None, block_length=None)
  ev.add_argument("--out", help="JSON record path (default: print only)")
  ev.set_defaults(func=run_eval)

  demo = subparsers.add_parser(
      "demo", help="every sampler side by side on the embedded toy model",
      description="Runs the baseline samplers, LookUM and (if shipped) the learned policy on "
      "a toy model's held-out set; prints a table and saves an accuracy-vs-NFE plot.")
  _add_common(demo)
  demo.add_argument("--out-dir", default="lookum_demo",
                    help="where results.json, results.csv and accuracy_vs_nfe.png go")
  demo.set_defaults(func=run_demo, limit=200)


def _fill_lengths(args: argparse.Namespace, lab: Lab) -> None:
  if args.gen_length is None:
    args.gen_length = lab.spec.gen_length if lab.spec else lab.task.gen_length
  if args.block_length is None:
    args.block_length = lab.spec.block_length if lab.spec else args.gen_length


def load_strategy_policy(args: argparse.Namespace):
  """The learned policy a strategy reads (`--strategy policy`, `policy_lookum`), else None."""
  from lookum_jax.sampling.strategies import strategy_class

  if not strategy_class(args.strategy).needs_policy:
    return None
  if not args.policy:
    raise ValueError(
        f"--strategy {args.strategy} needs --policy PATH (a trained policy directory, e.g. "
        "lookum_jax/assets/toy-sudoku/policy).")
  from policy_rl import load_policy
  return load_policy(args.policy)


def prepare_out_path(path: str) -> None:
  """Checks `--out` before the evaluation runs (creating its folder), so that a bad path
  does not lose a finished evaluation."""
  out = Path(path)
  if out.is_dir():
    raise ValueError(f"--out {path} is a directory; pass a file path, e.g. {out / 'eval.json'}.")
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--out {path}: cannot create its folder {out.parent}: {e}") from e


def run_eval(args: argparse.Namespace) -> int:
  if args.out:
    prepare_out_path(args.out)
  lab = open_lab(args.model, args.task,
                 cli_args.parse_key_values(args.task_option, "--task-option"), args.data,
                 args.limit)
  _fill_lengths(args, lab)
  config = cli_args.sampler_config_from_args(args)
  result = evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, config,
                    jax.random.key(args.seed), batch_size=args.batch_size,
                    policy=load_strategy_policy(args), progress=not args.no_progress)
  print(format_table([result]))
  if args.out:
    result.to_json(args.out)
    print(f"wrote {args.out}")
  return 0


def demo_samplers(gen_length: int, block_length: int) -> list[tuple[str, SamplerConfig]]:
  """The demo's line-up: each baseline, LookUM, at one and several tokens per step."""
  base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
  num_blocks = gen_length // block_length
  # Steps for about 2 and 4 tokens per step, kept multiples of the number of blocks.
  half = num_blocks * max(1, gen_length // 2 // num_blocks)
  quarter = num_blocks * max(1, gen_length // 4 // num_blocks)
  return [
      ("low_confidence 1/step", base),
      ("low_confidence 2/step", base.replace(steps=half)),
      ("low_confidence 4/step", base.replace(steps=quarter)),
      ("margin 2/step", base.replace(steps=half, strategy="margin")),
      ("entropy 2/step", base.replace(steps=half, strategy="entropy")),
      ("random 1/step", base.replace(strategy="random")),
      ("threshold tau=0.9", base.replace(strategy="threshold", params={"tau": 0.9})),
      ("threshold tau=0.7", base.replace(strategy="threshold", params={"tau": 0.7})),
      ("entropy_bounded g=0.1", base.replace(strategy="entropy_bounded",
                                              params={"gamma": 0.1})),
      ("entropy_bounded g=1", base.replace(strategy="entropy_bounded", params={"gamma": 1.0})),
      ("lookum K=2 2/step", base.replace(steps=half, strategy="lookum", params={"paths": 2})),
      ("lookum K=2 2/step common", base.replace(
          steps=half, strategy="lookum",
          params={"paths": 2, "pool_size": 3, "verifier_scope": "common"})),
  ]


def run_demo(args: argparse.Namespace) -> int:
  from lookum_jax.plotting import plot_accuracy_vs_nfe

  t0 = time.perf_counter()
  out_dir = Path(args.out_dir)
  try:  # before the samplers run, so a bad --out-dir loses nothing
    out_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--out-dir {out_dir}: cannot create it: {e}") from e
  lab = open_lab(args.model, args.task,
                 cli_args.parse_key_values(args.task_option, "--task-option"), args.data,
                 args.limit)
  gen_length = lab.spec.gen_length if lab.spec else lab.task.gen_length
  block_length = lab.spec.block_length if lab.spec else gen_length
  line_up = demo_samplers(gen_length, block_length)
  policy_dir = lab.model_dir / "policy"
  aux_by_label: dict[str, Any] = {}
  if policy_dir.is_dir():
    from policy_rl import load_policy
    policy = load_policy(policy_dir)
    base = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length)
    line_up.append(("learned policy", base.replace(strategy="policy", params={
        "mode": "deterministic", "features": policy.config.features})))
    aux_by_label["learned policy"] = policy
  print(f"{lab.task.name}: {len(lab.examples)} held-out problems, model {lab.model_dir.name}, "
        f"gen_length {gen_length}, block_length {block_length}")
  results: list[EvalResult] = []
  for label, config in line_up:
    results.append(evaluate(
        lab.model, lab.tokenizer, lab.task, lab.examples, config, jax.random.key(args.seed),
        batch_size=args.batch_size, policy=aux_by_label.get(label), label=label,
        progress=not args.no_progress))
    print(format_table(results[-1:]).splitlines()[-1], flush=True)
  print()
  print(format_table(results))
  with open(out_dir / "results.json", "w") as f:
    json.dump([r.summary() for r in results], f, indent=1, default=str)
  with open(out_dir / "results.csv", "w") as f:
    f.write("sampler,accuracy,ci_low,ci_high,mean_nfe,mean_steps,token_error_rate,wall_s\n")
    for r in results:
      ter = "" if r.token_error_rate is None else f"{r.token_error_rate:.5f}"
      f.write(f"{r.label},{r.accuracy:.4f},{r.ci95[0]:.4f},{r.ci95[1]:.4f},{r.mean_nfe:.2f},"
              f"{r.mean_steps:.2f},{ter},{r.wall_time_s:.2f}\n")
  plot_accuracy_vs_nfe(results, out_dir / "accuracy_vs_nfe.png",
                       title=f"{lab.model_dir.name}: {lab.task.name}, {len(lab.examples)} problems")
  print(f"\nwrote {out_dir}/results.json, results.csv, accuracy_vs_nfe.png "
        f"({time.perf_counter() - t0:.0f} s in all)")
  return 0

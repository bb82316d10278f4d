"""`lookum train mdm` and `lookum train policy`: resumable training runs from config files.

`mdm` trains a small LLaDA-architecture masked diffusion model on a toy task
(`lookum_jax.training`); `policy` trains an unmasking policy with GRPO against a frozen dLLM
(`policy_rl.train`). Rerunning the same command resumes from the run's latest checkpoint and
ends bit-identical to an uninterrupted run; Ctrl-C or SIGTERM saves a checkpoint first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _add_run_arguments(parser: argparse.ArgumentParser, config_example: str,
                       override_help: str) -> None:
  parser.add_argument("--config", required=True,
                      help=f"a config file with get_config(), e.g. {config_example}")
  parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                      help=f"change a config field (repeatable): {override_help}")
  parser.add_argument("--out", default=None,
                      help="run directory (default: runs/<config file name>)")
  parser.add_argument("--steps", type=int, default=None,
                      help="total training steps (same as --override num_steps=N)")
  parser.add_argument("--stop-after", type=int, default=None,
                      help="stop with a checkpoint after this many steps (the schedule still "
                           "spans the total); rerun to continue")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


HELP = {"train": "train a toy masked diffusion model or an unmasking policy"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
  parser = subparsers.add_parser(
      "train", help=HELP["train"],
      description=__doc__.split("\n\n")[1].replace("\n", " "))
  kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
  mdm = kinds.add_parser(
      "mdm", help="train a small masked diffusion model on a toy task",
      description="Train a small LLaDA-architecture masked diffusion model on a toy task. The "
                  "finished model goes to OUT/model (config.json, orbax params, tokenizer "
                  "files), loadable with lookum_jax.load_model.")
  _add_run_arguments(mdm, "configs/sudoku4.py",
                     "d_model=64, task_options.size=4 (one task option)")
  mdm.add_argument("--export-step", type=int, default=None,
                   help="do not train: export checkpoint STEP of the run in --out to "
                        "OUT/model-stepSTEP (to pick a checkpoint by its accuracy)")
  mdm.set_defaults(func=run_train_mdm)
  policy = kinds.add_parser(
      "policy", help="train an unmasking policy with GRPO against a frozen dLLM",
      description="Train an unmasking policy with GRPO against a frozen dLLM. Metrics go to "
                  "OUT/metrics.jsonl, the final policy to OUT/policy.")
  _add_run_arguments(policy, "configs/policy_sudoku.py",
                     "num_steps=10, grpo.alpha=3, policy.width=64, task_options.max_digits=3")
  policy.add_argument("--export-step", type=int, default=None,
                      help="do not train: export checkpoint STEP of the run in --out to "
                           "OUT/policy-stepSTEP (a run stopped before its last step)")
  policy.set_defaults(func=run_train_policy)


def _run_config(args: argparse.Namespace, load_config: Callable[[str], Any],
                apply_overrides: Callable[[Any, list[str]], Any]) -> tuple[Any, Path]:
  """The run's config (file, then `--override`s and `--steps`) and its run directory."""
  overrides = list(args.override)
  if args.steps is not None:
    overrides.append(f"num_steps={args.steps}")
  config = apply_overrides(load_config(args.config), overrides)
  out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
  return config, out


def _train_interruptibly(train: Callable[[], Any], out: Path) -> Any:
  """Runs `train()`; SIGTERM (a scheduler stopping the job) saves a checkpoint as Ctrl-C
  does. Returns None when interrupted, after saying how to resume."""
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:
    return train()
  except KeyboardInterrupt:
    print(f"\ninterrupted: the latest checkpoint is in {out / 'checkpoints'}; rerun the same "
          "command to resume.", file=sys.stderr)
    return None


def run_train_mdm(args: argparse.Namespace) -> int:
  from lookum_jax.training import apply_overrides, export_checkpoint, load_config, train

  config, out = _run_config(args, load_config, apply_overrides)
  if args.export_step is not None:
    print(f"model written to {export_checkpoint(out, args.export_step)}")
    return 0
  print(f"run directory: {os.fspath(out)}\nconfig: {config}", flush=True)
  result = _train_interruptibly(
      lambda: train(config, out, stop_after=args.stop_after, progress=not args.no_progress),
      out)
  if result is None:
    return 130
  loss = result.metrics[-1]["loss"] if result.metrics else float("nan")
  print(f"step {int(result.state.step)}/{config.num_steps}, loss {loss:.4f}")
  if result.model_dir is not None:
    print(f"model written to {result.model_dir}")
  return 0


def run_train_policy(args: argparse.Namespace) -> int:
  from policy_rl.config import apply_overrides, load_config
  from policy_rl.train import load_dllm, train

  config, out = _run_config(args, load_config, apply_overrides)
  if args.export_step is not None:
    from policy_rl.train import export_checkpoint

    print(f"policy written to {os.fspath(export_checkpoint(config, out, args.export_step))}")
    return 0
  model = load_dllm(config)
  print(f"run directory: {os.fspath(out)}\nconfig: {config}", flush=True)
  result = _train_interruptibly(
      lambda: train(config, out, stop_after=args.stop_after, progress=not args.no_progress,
                    model=model), out)
  if result is None:
    return 130
  last = result.metrics[-1] if result.metrics else {}
  print(f"step {int(result.state.step)}/{config.num_steps}: "
        + ", ".join(f"{k}={last[k]:.4g}" for k in ("reward", "accuracy", "nfe") if k in last))
  if result.policy_dir is not None:
    print(f"policy written to {os.fspath(result.policy_dir)}")
  return 0

"""Resumable run directories, shared by the MDM trainer and the policy trainer.

A run directory holds the run's config (JSON, written once; a rerun under another config is
refused), `metrics.jsonl` (one record a logged step) and `checkpoints/` (orbax, written
synchronously to a temporary directory and renamed into place, so an interrupted save
leaves the previous checkpoint as the latest). Rerunning with the same config resumes from
the latest checkpoint and drops metric lines of steps after it, which it redoes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import jax
import orbax.checkpoint as ocp

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"

State = TypeVar("State")


def check_run_directory(out_dir: Path, config_file: str, wanted: Mapping[str, Any]) -> None:
  """Records the config `wanted` in a new run directory; refuses to resume under another."""
  path = out_dir / config_file
  if path.exists():
    saved = json.loads(path.read_text())
    diffs = sorted(k for k in wanted.keys() | saved.keys() if wanted.get(k) != saved.get(k))
    if diffs:
      listing = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {wanted.get(k)!r}" for k in diffs)
      raise ValueError(
          f"{out_dir} holds a run with a different config ({listing}); resume with the same "
          "config, or choose another --out directory.")
    return
  out_dir.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dict(wanted), indent=2) + "\n")


def resume_metrics(out_dir: Path, up_to_step: int) -> tuple[Path, list[dict[str, Any]]]:
  """The metrics file and its records up to a resume point; the file is rewritten without
  the lines of steps after it (they are redone)."""
  path = out_dir / METRICS_FILE
  records = []
  if path.exists():
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r["step"] <= up_to_step]
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return path, records


def append_metrics(path: Path, record: Mapping[str, Any]) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(dict(record)) + "\n")


def checkpoint_manager(out_dir: Path, keep: int) -> ocp.CheckpointManager:
  """Synchronous orbax checkpoints under `out_dir/checkpoints`, the last `keep` kept."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, enable_async_checkpointing=False, cleanup_tmp_directories=True,
      create=True)
  return ocp.CheckpointManager((out_dir / CHECKPOINT_DIR).absolute(), options=options)


def restore(manager: ocp.CheckpointManager, step: int, like: State) -> State:
  """Checkpoint `step`, restored with the structure, shapes and dtypes of `like`."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def restore_step(out_dir: Path, keep: int, step: int | None, like: State) -> tuple[int, State]:
  """Checkpoint `step` (default: the latest) of the run in `out_dir`, restored like `like`,
  with its step; for exporting a checkpoint after the fact.

  Raises:
    ValueError: when there is no checkpoint `step`, naming the ones there are.
  """
  manager = checkpoint_manager(out_dir, keep)
  try:
    available = sorted(manager.all_steps())
    step = available[-1] if step is None and available else step
    if step not in available:
      raise ValueError(f"{out_dir} has no checkpoint of step {step}; available: {available}")
    return step, restore(manager, step, like)
  finally:
    manager.close()


class Resumed(NamedTuple):
  """Where a (re)started run stands: its state, the steps `[start, end)` still to run, and
  the metrics logged up to `start`."""

  state: Any
  latest_step: int | None  # the checkpoint restored, None for a new run
  start: int
  end: int
  metrics_path: Path
  history: list[dict[str, Any]]


def resume(manager: ocp.CheckpointManager, state: State, out_dir: Path, num_steps: int,
           stop_after: int | None) -> Resumed:
  """Restores the latest checkpoint into `state`'s structure (if there is one) and plans the
  steps to run: up to `num_steps`, or `stop_after` if that comes first."""
  latest = manager.latest_step()
  if latest is not None:
    state = restore(manager, latest, state)
  start = int(state.step)
  end = num_steps if stop_after is None else min(stop_after, num_steps)
  metrics_path, history = resume_metrics(out_dir, start)
  return Resumed(state, latest, start, end, metrics_path, history)


def save(manager: ocp.CheckpointManager, step: int, state: Any, *, force: bool = False) -> None:
  manager.save(step, args=ocp.args.StandardSave(state), force=force)

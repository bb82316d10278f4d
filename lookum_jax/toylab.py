"""The toy lab: a model directory with the task it was trained on, opened for scoring.

A toy model directory (shipped ones live in `lookum_jax/assets/<name>/`) carries a
`task.json` naming its task, the task's options, the decoding lengths it was trained for and
its held-out set, so `open_task_model("toy-sudoku")` needs nothing else; any other model
directory takes the task by name and the examples from a JSONL file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from lookum_jax.loading import load_model, load_tokenizer, resolve_path
from lookum_jax.tasks import Task, get_task

TASK_FILE = "task.json"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What `task.json` in a toy model directory says."""

  task: str
  options: dict[str, Any]
  gen_length: int
  block_length: int
  heldout: str | None = None  # file name inside the model directory
  # What an approximate KV cache costs this model, measured: {"sampler", "problems",
  # "accuracy": {"none": ..., "dual": ..., "dual, refresh 1": ...}, "command"}.
  cache_cost: dict[str, Any] | None = None

  def make_task(self) -> Task:
    return get_task(self.task, **self.options)


def read_task_spec(model_dir: str | os.PathLike) -> TaskSpec | None:
  """The directory's `task.json`, or None when it has none."""
  path = Path(model_dir) / TASK_FILE
  if not path.is_file():
    return None
  try:
    return TaskSpec(**json.loads(path.read_text()))
  except (TypeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is not a valid task spec: {e}") from e


def write_task_spec(model_dir: str | os.PathLike, spec: TaskSpec) -> None:
  Path(model_dir, TASK_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=1) + "\n")


@dataclasses.dataclass
class TaskModel:
  """A loaded model with its tokenizer, the task it solves and the examples to score."""

  model: Any
  tokenizer: Any
  task: Task
  examples: list[dict[str, Any]]
  spec: TaskSpec | None
  model_dir: Path

  @property
  def gen_length(self) -> int:
    """The response length the model was trained for (else the task's)."""
    return self.spec.gen_length if self.spec else self.task.gen_length

  @property
  def block_length(self) -> int:
    """The block length the model was trained for (else full diffusion)."""
    return self.spec.block_length if self.spec else self.gen_length


def open_task_model(model: str, task_name: str | None = None,
                    task_options: dict[str, Any] | None = None, data: str | None = None,
                    limit: int | None = None) -> TaskModel:
  """Loads the model and picks the task (`task_name`, else `task.json`) and the examples
  (`data`, a JSONL file, else the model's held-out set; the first `limit` of them).

  Raises:
    ValueError: when the task or the examples cannot be found, or `limit` is not positive.
  """
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
  return TaskModel(model=load_model(model_dir), tokenizer=load_tokenizer(model_dir), task=task,
                   examples=examples, spec=spec, model_dir=model_dir)

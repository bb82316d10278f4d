"""The toy tasks by name: the one list of them (`get_task("sudoku", size=6)`)."""

from __future__ import annotations

from typing import Any

from lookum_jax.problems import Registry
from lookum_jax.tasks.arithmetic import Addition, Multiplication
from lookum_jax.tasks.base import Task
from lookum_jax.tasks.chain import RegisterChain
from lookum_jax.tasks.countdown import Countdown
from lookum_jax.tasks.sudoku import Sudoku

TASKS: Registry[Task] = Registry("task", (Sudoku, Countdown, Addition, Multiplication,
                                          RegisterChain))


def task_names() -> list[str]:
  return TASKS.names()


def get_task(name: str, **options: Any) -> Task:
  """The task called `name` with `options` (its dataclass fields), e.g.
  `get_task("sudoku", size=6)`; see `Registry.get` for the errors it raises."""
  return TASKS.get(name, options)

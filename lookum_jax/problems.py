"""What every source of verifiable problems offers, and the one way to look one up by name.

Toy tasks (`lookum_jax.tasks.Task`: generated problems for character-level models) and
real-model benchmarks (`lookum_jax.benchmarks.Benchmark`: JSONL files, chat prompts) both
extend `ProblemSet`: a prompt per problem, a scorer that never raises, and validation of a
problem's fields. The decode-and-score path (`lookum_jax.decoding`) needs nothing more.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

ScoreT = TypeVar("ScoreT")
ProblemSetT = TypeVar("ProblemSetT", bound="ProblemSet")


class ProblemSet(abc.ABC, Generic[ScoreT]):
  """Problems (plain dicts) with a prompt and an exact scorer each.

  Subclasses are frozen dataclasses whose fields are their options; `ScoreT` is what
  `score` returns (a bool for the toy tasks, a `benchmarks.Score` for the benchmarks).
  """

  name: ClassVar[str]

  @abc.abstractmethod
  def prompt(self, problem: dict[str, Any]) -> str:
    """The text the model is conditioned on (before any chat template)."""

  @abc.abstractmethod
  def score(self, problem: dict[str, Any], response: str) -> ScoreT:
    """How `response` answers `problem`; never raises for any response text."""

  @abc.abstractmethod
  def validate(self, problem: dict[str, Any]) -> None:
    """Raises ValueError saying what is wrong if `problem` is malformed."""


class Registry(Generic[ProblemSetT]):
  """Problem-set classes by name, built from options: `get_task` and `get_benchmark`.

  Each package lists its classes in its `registry` module, which imports the concrete
  modules; the base modules import none of them.
  """

  def __init__(self, kind: str, classes: Sequence[type[ProblemSetT]]):
    self.kind = kind
    self._by_name: dict[str, type[ProblemSetT]] = {}
    for cls in classes:
      if cls.name in self._by_name:
        raise ValueError(f"two {kind}s are called {cls.name!r}: {self._by_name[cls.name]} "
                         f"and {cls}.")
      self._by_name[cls.name] = cls

  def names(self) -> list[str]:
    return sorted(self._by_name)

  def get(self, name: str, options: Mapping[str, Any]) -> ProblemSetT:
    """The problem set called `name`, built with `options` (its dataclass fields).

    Raises:
      ValueError: for an unknown name (listing the valid ones) or an unknown option (listing
        the valid options); bad option values raise from the class's own validation.
    """
    table = self._by_name
    if name not in table:
      raise ValueError(f"unknown {self.kind} {name!r}; valid {self.kind}s: "
                       f"{', '.join(sorted(table))}.")
    cls = table[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
      raise ValueError(f"{self.kind} {name!r} has no option(s) {unknown}; its options are: "
                       f"{', '.join(valid) or 'none'}.")
    return cls(**options)

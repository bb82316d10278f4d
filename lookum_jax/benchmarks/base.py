"""The common interface of the real-model benchmarks, their JSONL loading and registry.

A benchmark reads problems from a local JSONL file (nothing is downloaded), renders each as a
zero-shot user message for an Instruct model (the chat template is applied by the runner),
and scores a response the way the field does (answer extraction + normalisation for maths,
execution against the tests in a sandbox for code). Every problem carries a string `id`
(the file's own id field where it has one, else `<benchmark>-<line index>`), the key that
makes interrupted runs resumable.
"""

from __future__ import annotations

import abc
import dataclasses
import gzip
import os
from pathlib import Path
from typing import Any, ClassVar

from lookum_jax import jsonl
from lookum_jax.problems import ProblemSet


@dataclasses.dataclass(frozen=True)
class Score:
  """How one response scored.

  Attributes:
    extracted: the answer (or program) extracted from the response; None if none was found.
    correct: whether the response solves the problem.
    score: the benchmark's metric for this problem in [0, 1]: `correct` as a float, except
      Sudoku, whose published metric is the fraction of blank cells filled correctly.
    details: benchmark-specific extras (sandbox status, the equivalence checker used, ...).
  """

  extracted: str | None
  correct: bool
  score: float
  details: dict[str, Any] = dataclasses.field(default_factory=dict)


def binary_score(extracted: str | None, correct: bool, **details: Any) -> Score:
  return Score(extracted=extracted, correct=bool(correct), score=float(bool(correct)),
               details=details)


class Benchmark(ProblemSet[Score]):
  """A benchmark: JSONL problems, a prompt per problem, and a scorer.

  Subclasses are frozen dataclasses whose fields are the benchmark's options (prompt style,
  sandbox limits, ...); `get_benchmark(name, **options)` builds one by name.
  """

  required_fields: ClassVar[tuple[str, ...]]
  id_field: ClassVar[str | None] = None
  data_help: ClassVar[str] = ""  # the expected JSONL fields, for error messages

  @abc.abstractmethod
  def prompt(self, problem: dict[str, Any]) -> str:
    """The user message for `problem` (before any chat template)."""

  def assistant_prefix(self, problem: dict[str, Any]) -> str:
    """Text placed after the chat template's assistant header, before the response."""
    return ""

  @abc.abstractmethod
  def reference(self, problem: dict[str, Any]) -> str | None:
    """The gold answer as text (recorded beside the extracted one), if the problem has one."""

  def validate(self, problem: dict[str, Any]) -> None:
    missing = [k for k in self.required_fields if k not in problem]
    if missing:
      raise ValueError(f"missing field(s) {missing}")

  def load(self, path: str | os.PathLike) -> list[dict[str, Any]]:
    """Problems from a local JSONL (or .jsonl.gz) file, each with a string `id`.

    Raises:
      ValueError: for a missing file (saying which fields it needs), and listing every bad
        line (not JSON, not an object, missing fields) and duplicate id. No line is skipped.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
      raise ValueError(
          f"{self.name} data file {path} does not exist; download the benchmark yourself and "
          f"pass a local JSONL file (--override data_path=FILE). Expected fields: "
          f"{self.data_help or ', '.join(self.required_fields)}.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
      lines = f.read().splitlines()
    problems, errors, seen = [], [], {}
    for line_number, problem in jsonl.iter_objects(lines, self.validate, errors,
                                                   allow_trailing_blank=True):
      problem = dict(problem, id=self.problem_id(problem, len(problems)))
      if problem["id"] in seen:
        errors.append((line_number, f"duplicate id {problem['id']!r} (also line "
                                    f"{seen[problem['id']]})"))
        continue
      seen[problem["id"]] = line_number
      problems.append(problem)
    if errors:
      raise ValueError(jsonl.describe_errors(path, self.name, errors, len(lines)))
    if not problems:
      raise ValueError(f"{path} holds no {self.name} problems.")
    return problems

  def problem_id(self, problem: dict[str, Any], index: int) -> str:
    """The problem's id: its own id field, else `<name>-<index>` (0-based, file order)."""
    if self.id_field is not None and problem.get(self.id_field) is not None:
      return str(problem[self.id_field])
    if problem.get("id") is not None:
      return str(problem["id"])
    return f"{self.name}-{index}"


PROMPT_STYLES = ("d1", "boxed")


def check_prompt_style(name: str, style: str) -> None:
  if style not in PROMPT_STYLES:
    raise ValueError(f"{name}: prompt_style must be one of {PROMPT_STYLES}, got {style!r}.")


# The d1 protocol (public d1 evaluation code, which the LookUM paper's baselines match) asks
# for the reasoning and the answer in tags; this is our wording of that format.
REASONING_FORMAT = ("Respond in this format:\n<reasoning>\nYour reasoning\n</reasoning>\n"
                    "<answer>\n{answer}\n</answer>")

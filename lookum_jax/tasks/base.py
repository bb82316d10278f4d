"""The common interface of the toy lab's verifiable tasks, and JSONL input/output.

A task generates examples deterministically from a seed, renders them as prompt and
reference-response text for a character-level model, and scores a model's response with an
exact checker (any correct answer passes, not only the reference one).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from lookum_jax import jsonl
from lookum_jax.problems import ProblemSet


class Task(ProblemSet[bool]):
  """A verifiable task: generator, prompt/response rendering and an exact scorer.

  Subclasses are frozen dataclasses whose fields are the task's options (grid size, number
  of digits, ...); `get_task(name, **options)` builds one by name. Subclasses write
  `prompt_text`; `prompt` (the `ProblemSet` interface) returns it.
  """

  @property
  @abc.abstractmethod
  def gen_length(self) -> int:
    """Default response length in tokens: the longest reference response, rounded up so
    common block lengths divide it; responses are padded with EOS to this length."""

  @property
  @abc.abstractmethod
  def prompt_length(self) -> int:
    """An upper bound on the prompt length in characters (= tokens) for this task's options;
    batches left-pad prompts to it so every batch has the same shape."""

  @abc.abstractmethod
  def generate(self, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` examples, a deterministic function of `(self, n, seed)`."""

  @abc.abstractmethod
  def prompt_text(self, example: dict[str, Any]) -> str:
    """The prompt the model is conditioned on."""

  def prompt(self, problem: dict[str, Any]) -> str:
    return self.prompt_text(problem)

  @abc.abstractmethod
  def target_text(self, example: dict[str, Any]) -> str | None:
    """A reference response, or None when the example carries none (answers not unique)."""

  @abc.abstractmethod
  def score(self, example: dict[str, Any], response_text: str) -> bool:
    """Whether `response_text` is a correct answer; never raises for any response."""

  @abc.abstractmethod
  def validate(self, example: dict[str, Any]) -> None:
    """Raises ValueError saying what is wrong if `example` is not a well-formed example."""

  def parse_jsonl(self, path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads one example per line, validating each.

    Raises:
      ValueError: listing every bad line number (not JSON, not an object, missing or malformed
        fields, blank line), with the reason for the first few. No line is skipped silently.
    """
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
    errors: list[tuple[int, str]] = []
    examples = [example for _, example in jsonl.iter_objects(lines, self.validate, errors)]
    if errors:
      raise ValueError(jsonl.describe_errors(path, self.name, errors, len(lines)))
    return examples


def write_jsonl(examples: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
  """Writes one JSON object per line (the format `Task.parse_jsonl` reads)."""
  with open(path, "w", encoding="utf-8") as f:
    for example in examples:
      f.write(json.dumps(example, separators=(",", ":")) + "\n")


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def require_keys(example: dict[str, Any], keys: Sequence[str]) -> None:
  missing = [k for k in keys if k not in example]
  if missing:
    raise ValueError(f"missing key(s) {missing}")

"""Strict JSONL reading shared by the toy tasks and the benchmarks: every bad line is
reported with its number and reason, and none is skipped silently."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

MAX_DESCRIBED_ERRORS = 20


def iter_objects(lines: Sequence[str], validate: Callable[[dict[str, Any]], None],
                 errors: list[tuple[int, str]], *, allow_trailing_blank: bool = False
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
  """`(line number, object)` of each line holding a JSON object that `validate` accepts;
  every other line is appended to `errors` as `(line number, reason)`."""
  for line_number, line in enumerate(lines, start=1):
    if not line.strip():
      if not (allow_trailing_blank and line_number == len(lines)):
        errors.append((line_number, "blank line"))
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError as e:
      errors.append((line_number, f"not valid JSON ({e.msg})"))
      continue
    if not isinstance(value, dict):
      errors.append((line_number, f"expected a JSON object, got {type(value).__name__}"))
      continue
    try:
      validate(value)
    except ValueError as e:
      errors.append((line_number, str(e)))
      continue
    yield line_number, value


def describe_errors(path: str | os.PathLike, name: str, errors: Sequence[tuple[int, str]],
                    num_lines: int) -> str:
  """One message listing every bad line number and the reasons of the first few."""
  numbers = ", ".join(str(n) for n, _ in errors)
  details = "\n".join(f"  line {n}: {why}" for n, why in errors[:MAX_DESCRIBED_ERRORS])
  more = len(errors) - MAX_DESCRIBED_ERRORS
  if more > 0:
    details += f"\n  ... and {more} more"
  return (f"{os.fspath(path)}: {len(errors)} malformed {name} line(s) of {num_lines} "
          f"(lines {numbers}):\n{details}")

"""`lookum eval`'s journal: per-problem records appended beside `--out`, so an interrupted
run resumes where it stopped, and a changed run never mixes with an old one's records.

The journal `<out stem>.records.jsonl` starts with a header holding the run's fingerprint
(`lookum_jax.fingerprint` over the sampler's JSON form, the model, the task, the seed and the
policy); each later line is one problem's record with a fingerprint of its example, so a
changed data file is caught too. It is deleted once `--out` is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookum_jax.fingerprint import fingerprint

FORMAT = "lookum-eval-journal/1"


def journal_path(out: str | os.PathLike) -> Path:
  out = Path(out)
  return out.with_name(f"{out.stem}.records.jsonl")


def model_identity(model_dir: str | os.PathLike) -> dict[str, Any]:
  """What tells two model directories apart, cheaply: the path, `config.json` and the names
  and sizes of the stored files (a retrained model's data files get new names)."""
  model_dir = Path(model_dir).absolute()
  config = model_dir / "config.json"
  params = model_dir / "params"
  files = sorted((p.relative_to(params).as_posix(), p.stat().st_size)
                 for p in params.rglob("*") if p.is_file()) if params.is_dir() else []
  return {"path": str(model_dir),
          "config": config.read_text() if config.is_file() else None,
          "files": fingerprint(files)}


class Journal:
  """The records of one run, appended as they are scored."""

  def __init__(self, out: str | os.PathLike, run: dict[str, Any],
               examples: Sequence[dict[str, Any]]):
    self.path = journal_path(out)
    self.run = run
    self.fingerprint = fingerprint(run)
    self.examples = examples
    self.saved = 0

  def load(self) -> dict[int, dict[str, Any]]:
    """The records a previous run of this same run saved (none if there is no journal).

    Raises:
      ValueError: when the journal belongs to a different run or data, or is malformed.
    """
    examples = self.examples
    if not self.path.exists():
      self._write_lines([])
      return {}
    lines = self.path.read_text().split("\n")
    try:
      header = json.loads(lines[0])
    except json.JSONDecodeError:
      header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
      raise ValueError(f"{self.path}: not a lookum eval journal; move it away or pick "
                       "another --out.")
    if header.get("fingerprint") != self.fingerprint:
      old = header.get("run", {})
      changed = sorted(k for k in {*old, *self.run} if old.get(k) != self.run.get(k))
      raise ValueError(
          f"{self.path} holds the records of a different run ({', '.join(changed)} changed); "
          "delete it to start over, or pick another --out.")
    done: dict[int, dict[str, Any]] = {}
    body = lines[1:]
    while body and not body[-1].strip():
      body.pop()
    for number, line in enumerate(body, start=2):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        if number == len(body) + 1:  # a line cut short by the interruption: redo it
          break
        raise ValueError(f"{self.path}: line {number} is not valid JSON ({e.msg}); delete "
                         "the file to start over.") from e
      i = record.get("index")
      if not isinstance(i, int) or i >= len(examples):
        continue  # a problem beyond this run's --limit
      if record.pop("example", None) != fingerprint(examples[i]):
        raise ValueError(
            f"{self.path}: problem {i} differs from the one its record was made for (the "
            "data changed); delete the file to start over, or pick another --out.")
      done[i] = record
    self._write_lines(list(done.values()))  # drops a cut-short last line
    self.saved = len(done)
    return done

  def _line(self, record: dict[str, Any]) -> str:
    return json.dumps({**record, "example": fingerprint(self.examples[record["index"]])}) + "\n"

  def _write_lines(self, records: list[dict[str, Any]]) -> None:
    """The header and `records`, written atomically."""
    header = {"format": FORMAT, "fingerprint": self.fingerprint, "run": self.run}
    tmp = self.path.with_name(self.path.name + ".tmp")
    tmp.write_text(json.dumps(header) + "\n" + "".join(self._line(r) for r in records))
    os.replace(tmp, self.path)

  def append(self, records: list[dict[str, Any]]) -> None:
    """Appends one batch's records in one write, flushed to disk."""
    text = "".join(self._line(r) for r in records)
    with open(self.path, "a") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    self.saved += len(records)

  def finish(self) -> None:
    self.path.unlink(missing_ok=True)

"""Where a command writes: checked by a real write before any model is loaded, so a bad
path never loses a finished run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def probe_folder(folder: str | os.PathLike, flag: str, value: str) -> Path:
  """Creates `folder` if needed and proves it writable by creating and removing a file in it.

  `flag` and `value` name the command-line option the folder came from, for the message.

  Raises:
    ValueError: naming the option, the folder and why it cannot be written.
  """
  folder = Path(folder)
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ValueError(f"{flag} {value}: cannot create its folder {folder}: "
                     f"{e.strerror or e}; pick another {flag}.") from e
  try:
    fd, probe = tempfile.mkstemp(prefix=".lookum-write-probe-", dir=folder)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"{flag} {value}: cannot write into {folder} ({e.strerror or e}); "
                     f"pick a writable {flag}.") from e
  return folder


def write_atomically(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same folder, so a reader (or an
  interruption) never sees half a file."""
  path = Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def probe_file(path: str | os.PathLike, flag: str) -> Path:
  """Checks that the file `path` can be written (its folder created and writable, the path
  itself not a folder) before the work that produces it starts."""
  out = Path(path)
  if out.is_dir():
    raise ValueError(f"{flag} {path} is a directory; pass a file path, e.g. "
                     f"{out / 'eval.json'}.")
  probe_folder(out.parent, flag, str(path))
  return out

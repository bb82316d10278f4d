"""Checks that a saved model or policy is whole before orbax reads it.

A truncated or corrupt file otherwise surfaces as a long orbax / TensorStore traceback (or a
bare `Expecting value: line 1 column 1`) that names no file. These checks raise one
`ValueError` naming the file and what is wrong with it, and cost little: the JSON files are
parsed, and each stored array's last byte is read, which is enough to find a truncated data
file without reading the weights twice.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

# The JSON files an orbax (StandardCheckpointer, OCDBT) directory holds, when present.
_ORBAX_JSON = ("_METADATA", "_CHECKPOINT_METADATA", "_sharding")
_FIX = "re-copy it, or re-create it (lookum convert / save_model / save_policy)"


def read_json(path: str | os.PathLike) -> Any:
  """The JSON value stored at `path`; a missing, empty or malformed file is a ValueError that
  names it."""
  path = Path(path)
  try:
    text = path.read_text()
  except OSError as e:
    raise ValueError(f"{path}: cannot read it: {e.strerror or e}.") from e
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not a text file ({e.reason}); {_FIX}.") from e
  if not text.strip():
    raise ValueError(f"{path}: the file is empty (truncated?); {_FIX}.")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON (truncated or corrupt: {e.msg}, line "
                     f"{e.lineno} column {e.colno}); {_FIX}.") from e


def check_orbax_dir(params_dir: str | os.PathLike) -> None:
  """Checks an orbax checkpoint directory: its metadata files parse and every stored array
  is as long as its index says.

  Raises:
    ValueError: naming the first bad file and what is wrong with it.
  """
  params_dir = Path(params_dir).absolute()
  if not params_dir.is_dir():
    raise ValueError(f"{params_dir}: missing; a saved model or policy keeps its weights there.")
  for name in _ORBAX_JSON:
    if (params_dir / name).exists():
      read_json(params_dir / name)
  for path in sorted((params_dir / "array_metadatas").glob("*")):
    read_json(path)
  if (params_dir / "manifest.ocdbt").exists():
    _check_ocdbt(params_dir)


def _check_ocdbt(params_dir: Path) -> None:
  import tensorstore as ts

  try:
    store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{params_dir}/"}).result()
    keys = store.list().result()
  except Exception as e:  # TensorStore raises ValueError / RuntimeError with a status text
    raise ValueError(f"{params_dir}: its OCDBT index (manifest.ocdbt and ocdbt.process_*/) "
                     f"cannot be read: {_one_line(e)}; {_FIX}.") from e
  futures = [(key, store.read(key, byte_range=slice(-1, None))) for key in keys]
  for key, future in futures:
    try:
      future.result()
    except Exception as e:
      name = key.decode(errors="replace").split("/")[0]
      raise ValueError(f"{_data_file(params_dir, e)}: array {name} cannot be read "
                       f"(truncated or corrupt: {_one_line(e)}); {_FIX}.") from e


def _data_file(params_dir: Path, error: Exception) -> Path:
  """The data file a TensorStore read error points at: the one whose size it reports, else
  the checkpoint directory."""
  match = re.search(r"value of size (\d+)", str(error))
  if match:
    size = int(match.group(1))
    for path in sorted(params_dir.rglob("*")):
      if path.is_file() and path.stat().st_size == size and "/d/" in path.as_posix():
        return path
  return params_dir


def _one_line(error: Exception) -> str:
  text = " ".join(str(error).split())
  return text if len(text) <= 200 else text[:197] + "..."


def check_model_dir(directory: str | os.PathLike) -> None:
  """Checks a converted model directory (`config.json` + `params/`)."""
  directory = Path(directory)
  read_json(directory / "config.json")
  check_orbax_dir(directory / "params")


def check_policy_dir(directory: str | os.PathLike) -> None:
  """Checks a saved policy directory (`policy_config.json` + `params/`)."""
  directory = Path(directory)
  config = read_json(directory / "policy_config.json")
  if not isinstance(config, dict):
    raise ValueError(f"{directory / 'policy_config.json'}: expected a JSON object of policy "
                     f"settings, got {type(config).__name__}; {_FIX}.")
  check_orbax_dir(directory / "params")

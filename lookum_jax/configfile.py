"""Python config files (`configs/*.py` with `get_config()`) and `key=value` overrides
(strategy names and parameters are parsed by `lookum_jax.parsing`).

Shared by model training, policy training, the benchmark runner, the command line and the
lm-eval model: configs are frozen dataclasses; an override names a field (`steps=128`), a
field of a nested dataclass (`grpo.alpha=3`) or one entry of a mapping field
(`task_options.size=4`). All overrides of one call are applied together, so a combination
that is only valid as a whole is accepted.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def parse_value(text: str) -> Any:
  """A Python literal (`3`, `1e-3`, `None`, `(1, 2)`, `true`) or, failing that, the text."""
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word is a string: task=addition


def parse_key_values(items: Sequence[str] | None, what: str) -> dict[str, Any]:
  """`["a=1", "b=x"]` -> `{"a": 1, "b": "x"}`; a ValueError names a malformed item."""
  out = {}
  for item in items or []:
    if "=" not in item:
      raise ValueError(f"{what} {item!r} must look like key=value.")
    key, value = item.split("=", 1)
    out[key.strip().replace("-", "_")] = parse_value(value.strip())
  return out


def load_config(path: str | os.PathLike, config_type: type[ConfigT]) -> ConfigT:
  """Runs `get_config()` from a Python config file and checks what it returns."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist; pass a file from configs/.")
  spec = importlib.util.spec_from_file_location("_lookum_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config()")
  config = module.get_config()
  if not isinstance(config, config_type):
    raise ValueError(f"{path}: get_config() returned {type(config).__name__}, not "
                     f"{config_type.__name__}")
  return config


def apply_overrides(config: ConfigT, overrides: Sequence[str],
                    mappings: Sequence[str] = (),
                    changes: Mapping[str, Any] | None = None) -> ConfigT:
  """Applies `key=value` overrides (values as `parse_value` reads them).

  Args:
    config: a (frozen) dataclass instance.
    overrides: `field=value`, `nested.field=value`, or `mapping.entry=value` for the
      mapping-valued fields named in `mappings`.
    mappings: names of dict-valued fields whose entries may be set one by one.
    changes: field values, already built, to set together with the overrides (a caller
      that reads some keys itself).

  Raises:
    ValueError: for a malformed override, an unknown key (listing the valid ones), or a
      value of the wrong type; invalid combinations raise from the config's own checks.
  """
  changes = dict(changes or {})
  for override in overrides:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ValueError(f"override {override!r} is not of the form key=value")
    _record(config, changes, key.split("."), parse_value(text.strip()), override, mappings)
  return _materialize(config, changes)


def _record(config: Any, changes: dict[str, Any], path: list[str], value: Any,
            override: str, mappings: Sequence[str]) -> None:
  fields = [f.name for f in dataclasses.fields(config)]
  name = path[0]
  if name in mappings:
    if len(path) == 1:
      if not isinstance(value, Mapping):
        raise ValueError(f"override {override!r}: {name} must be a dict literal")
      changes[name] = dict(value)
    else:
      entries = dict(changes.get(name, getattr(config, name)))
      entries[".".join(path[1:])] = value
      changes[name] = entries
    return
  if name not in fields:
    nested = [f for f in fields if dataclasses.is_dataclass(getattr(config, f))]
    listing = ", ".join([f"{f}.<field>" if f in nested else f for f in fields] +
                        [f"{m}.<entry>" for m in mappings])
    raise ValueError(f"unknown config key {name!r} in override {override!r}; valid keys of "
                     f"{type(config).__name__}: {listing}")
  current = getattr(config, name)
  if dataclasses.is_dataclass(current):
    if len(path) == 1:
      raise ValueError(f"override {override!r}: set a field of {name}, e.g. {name}.<field>=...")
    _record(current, changes.setdefault(name, {}), path[1:], value, override, ())
    return
  if len(path) > 1:
    raise ValueError(f"override {override!r}: {name} has no sub-fields")
  hint = typing.get_type_hints(type(config))[name]
  changes[name] = coerce(name, hint, value, override)


def _materialize(config: Any, changes: dict[str, Any]) -> Any:
  for name, change in list(changes.items()):
    current = getattr(config, name)
    if dataclasses.is_dataclass(current) and isinstance(change, dict):
      changes[name] = _materialize(current, change)
  return dataclasses.replace(config, **changes)


def coerce(key: str, hint: Any, value: Any, override: str) -> Any:
  """`value` converted to the field's type where that is lossless, else a ValueError."""
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  allowed = typing.get_args(hint) if union else (hint,)
  origins = [typing.get_origin(t) or t for t in allowed]
  if value is None and type(None) in allowed:
    return None
  if float in origins and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if tuple in origins and isinstance(value, (list, tuple)):
    return tuple(value)
  if tuple in origins and isinstance(value, (str, int, float)):
    return (value,)
  if any(isinstance(t, type) and t is not type(None) and isinstance(value, t)
         and not (isinstance(value, bool) and t is not bool) for t in origins):
    return value
  if str in origins and isinstance(value, (int, float)) and not isinstance(value, bool):
    return str(value)  # e.g. a path that looks like a number
  names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
  raise ValueError(f"override {override!r}: {key} must be {names}, got {value!r}")

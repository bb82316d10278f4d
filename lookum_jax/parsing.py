"""The one parser at the edge: a strategy name plus `key=value` parameters -> a strategy value,
and sampler fields -> a `SamplerConfig`.

Names exist only here, for command lines and config files. The CLI (`--strategy`/`--param`),
lm-eval's `model_args`, benchmark configs and presets and the experiments all call
`parse_strategy` / `parse_sampler`; the engine takes values. Packages above the library
(`policy_rl`) add their strategies with `register_strategy` (`policy_rl.register_strategies`,
called by the edges that offer those names), so this parser never names them.

    parse_strategy("threshold", {"tau": "0.8"})        # Threshold(tau=0.8)
    parse_strategy("lookum", {"paths": 3, "base": "threshold"})
    parse_sampler({"strategy": "lookum", "params": {"paths": 2}, "steps": 64})
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from lookum_jax.configfile import coerce, parse_value
from lookum_jax.sampling.cache import cache_mode
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.sampling.refresh import REFRESH_MODES, block_start_mode
from lookum_jax.sampling.strategies import (
    Entropy,
    EntropyBounded,
    LowConfidence,
    Margin,
    RandomOrder,
    Strategy,
    Threshold,
)
from lookum_jax.sampling.strategies.klass import KLASS
from lookum_jax.sampling.strategies.prophet import Prophet

# A strategy class, a "module:attr" reference to one (imported on first use, so naming a
# strategy never imports its package up front), or a function `(**params) -> Strategy`.
Factory = type[Strategy] | str | Callable[..., Strategy]

_STRATEGIES: dict[str, Factory] = {
    "low_confidence": LowConfidence,
    "random": RandomOrder,
    "margin": Margin,
    "entropy": Entropy,
    "threshold": Threshold,
    "entropy_bounded": EntropyBounded,
    "lookum": LookUM,
    "klass": KLASS,
    "prophet": Prophet,
    "pc_sampler": "lookum_jax.sampling.strategies.pc_sampler:PCSampler",
    "dus": "lookum_jax.sampling.strategies.dus:DUS",
}

# Sampler fields that hold a mode value: its name (or the value) -> the value.
_MODE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "cache": cache_mode, "block_start": block_start_mode}

# Parameter types converted from text; other annotations are passed through to the strategy.
_PLAIN_TYPES = (int, float, bool, str, tuple, type(None))


def register_strategy(name: str, factory: Factory) -> None:
  """Makes `name` a strategy of the parser (idempotent for the same factory).

  Raises:
    ValueError: when `name` already names another factory.
  """
  current = _STRATEGIES.get(name)
  if current is not None and current != factory:
    raise ValueError(f"strategy name {name!r} is taken by {current!r}; pick another name.")
  _STRATEGIES[name] = factory


def strategy_names() -> list[str]:
  return sorted(_STRATEGIES)


def strategy_factory(name: str) -> Callable[..., Strategy]:
  """The class (or function) that builds strategy `name`."""
  if name not in _STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}.")
  factory = _STRATEGIES[name]
  if isinstance(factory, str):
    module, _, attr = factory.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    _STRATEGIES[name] = factory
  return factory


def strategy_parameters(name: str) -> dict[str, Any]:
  """Parameter name -> annotated type (`Any` where unannotated) of strategy `name`."""
  factory = strategy_factory(name)
  if isinstance(factory, type) and issubclass(factory, Strategy):
    return factory.param_types()  # its JSON form's names (LookUM's flat `tau`, `pool_size`)
  if isinstance(factory, type) and dataclasses.is_dataclass(factory):
    hints = typing.get_type_hints(factory)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(factory) if f.init}
  hints = typing.get_type_hints(factory)
  return {p.name: hints.get(p.name, Any) for p in inspect.signature(factory).parameters.values()
          if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def parse_strategy(strategy: str | Strategy, params: Mapping[str, Any] | None = None, *,
                   what: str = "--param") -> Strategy:
  """The strategy value a name and its parameters describe.

  Args:
    strategy: a name (`strategy_names()`), or a value (returned as is; then no `params`).
    params: parameter values, typed or as text (`"0.8"`, `"(1, 2)"`, `"true"`), converted
      to the parameter's type where that is lossless. A parameter that is itself a strategy
      takes a name, a value or a `{"strategy": name, **params}` dict; `base.tau=0.8` sets one
      parameter of it. One that is another dataclass (a verifier) takes a value or a dict;
      `verifier.scope=masked` sets one field of it.
    what: where the parameters came from, for errors (`--param`, `model_args`).

  Raises:
    ValueError: for an unknown name (listing the valid ones), an unknown parameter (listing
      the valid ones) or a value of the wrong type (naming the expected one); bad values
      raise from the strategy's own checks.
  """
  return _parse(strategy, params, what, prefix="")


def _parse(strategy: str | Strategy, params: Mapping[str, Any] | None, what: str,
           prefix: str) -> Strategy:
  if isinstance(strategy, Strategy):
    if params:
      raise ValueError(f"parameters {sorted(params)} are given twice: the strategy value "
                       f"{strategy!r} already holds its parameters; drop them.")
    return strategy
  if not isinstance(strategy, str):
    raise ValueError(f"strategy must be a name or a Strategy value, got {strategy!r}.")
  if params is not None and not isinstance(params, Mapping):
    raise ValueError(f"strategy {strategy!r} takes its parameters as a dict, got "
                     f"{type(params).__name__}.")
  factory = strategy_factory(strategy)
  hints = strategy_parameters(strategy)
  flat, nested = {}, {}
  for key, value in (params or {}).items():
    head, dot, rest = key.partition(".")
    if dot:
      nested.setdefault(head, {})[rest] = value
    else:
      flat[key] = value
  unknown = sorted((set(flat) | set(nested)) - set(hints))
  if unknown:
    raise ValueError(f"unknown parameter(s) {unknown} for strategy {strategy!r}; valid "
                     f"parameters: {', '.join(sorted(hints)) or 'none'}.")
  typed = {}
  for key in {**flat, **nested}:
    if _strategy_typed(hints[key]):
      typed[key] = _nested_strategy(factory, strategy, key, flat.get(key), nested.get(key),
                                    what, prefix)
    elif _part_type(hints[key]) is not None:
      typed[key] = _nested_part(_part_type(hints[key]), factory, strategy, key, flat.get(key),
                                nested.get(key), what, prefix)
    elif key in nested:
      raise ValueError(f"{what} {prefix}{key}.{next(iter(nested[key]))}: parameter {key!r} of "
                       f"strategy {strategy!r} has no parameters of its own.")
    else:
      typed[key] = _typed_value(strategy, prefix + key, hints[key], flat[key], what)
  if isinstance(factory, type) and issubclass(factory, Strategy):
    return factory.from_params(typed)
  return factory(**typed)


def sampler_fields() -> dict[str, Any]:
  """`SamplerConfig` field name -> annotated type (without `strategy`)."""
  hints = typing.get_type_hints(SamplerConfig)
  return {f.name: hints[f.name] for f in dataclasses.fields(SamplerConfig)
          if f.name != "strategy"}


def parse_sampler(values: Mapping[str, Any], *, base: SamplerConfig | None = None,
                  what: str = "sampler", params_what: str | None = None) -> SamplerConfig:
  """The `SamplerConfig` that field values describe, on top of `base` (default: the defaults).

  Args:
    values: `SamplerConfig` fields (typed or as text), `strategy` (a name or a value) and
      `params` (the strategy's parameters, see `parse_strategy`). Without `strategy`, or
      with `base`'s strategy name, `params` change `base`'s strategy; with another name they
      start from that strategy's defaults.
    base: the sampler the values change.
    what, params_what: where the fields and the parameters came from, for errors.

  Raises:
    ValueError: for an unknown field (listing the valid ones), a value of the wrong type, or
      from `parse_strategy` and `SamplerConfig`'s checks.
  """
  base = SamplerConfig() if base is None else base
  params_what = what if params_what is None else params_what
  values = dict(values)
  strategy = values.pop("strategy", None)
  params = dict(values.pop("params", None) or {})
  fields = sampler_fields()
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"unknown sampler field(s) {unknown}; valid: "
                     f"{', '.join(sorted(fields))}, strategy, params.")
  changes = {}
  for key, value in values.items():
    if key in _MODE_FIELDS:
      try:
        changes[key] = _MODE_FIELDS[key](value)
      except ValueError as error:
        raise ValueError(f"{what} {key}={value}: {error}") from None
      continue
    if key == "cache_refresh" and isinstance(value, str):  # a period or a mode's name
      value = int(value) if value.strip().isdigit() else value
      if isinstance(value, str) and value not in REFRESH_MODES:
        raise ValueError(f"{what} {key}={value}: the sampler takes {key} as int (a period) "
                         f"or one of {tuple(REFRESH_MODES)}, got {value!r}.")
    elif isinstance(value, str) and str not in _allowed_types(fields[key]):
      value = parse_value(value)
    try:
      changes[key] = coerce(key, fields[key], value, key)
    except ValueError:
      raise ValueError(f"{what} {key}={value}: the sampler takes {key} as "
                       f"{_type_names(fields[key])}, got {value!r}.") from None
  if strategy is None or strategy == base.strategy.name:
    if params:
      strategy = parse_strategy(base.strategy.name, {**base.strategy.to_dict(), **params},
                                what=params_what)
    else:
      strategy = base.strategy
  else:
    strategy = parse_strategy(strategy, params, what=params_what)
  return dataclasses.replace(base, strategy=strategy, **changes)


def _strategy_typed(hint: Any) -> bool:
  """The parameter holds a strategy (its annotation is a `Strategy` class or a union of)."""
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  options = typing.get_args(hint) if union else (hint,)
  return any(isinstance(t, type) and issubclass(t, Strategy) for t in options)


def _nested_strategy(factory: Any, owner: str, key: str, value: Any,
                     changes: Mapping[str, Any] | None, what: str, prefix: str) -> Strategy:
  """A strategy-valued parameter from a name, a value or a dict, then `key.<param>` changes."""
  if value is None and changes:
    value = _default(factory, key)
  if isinstance(value, Mapping):
    value = dict(value)
    if "strategy" not in value:
      raise ValueError(f"{what} {prefix}{key}: a strategy given as a dict needs its name under "
                       f"'strategy', got {value!r}.")
    name, params = value.pop("strategy"), value
  elif isinstance(value, Strategy):
    name, params = value.name, value.to_dict()
  elif isinstance(value, str):
    name, params = value, {}
  else:
    raise ValueError(f"{what} {prefix}{key}={value}: strategy {owner!r} takes {key} as a strategy "
                     f"(a name: {', '.join(strategy_names())}), got {value!r}.")
  if isinstance(value, Strategy) and not changes:
    return value
  return _parse(name, {**params, **(changes or {})}, what, prefix=f"{prefix}{key}.")


def _part_type(hint: Any) -> type | None:
  """The dataclass a parameter holds, other than a strategy (e.g. a verifier), else None."""
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  for option in typing.get_args(hint) if union else (hint,):
    if (isinstance(option, type) and dataclasses.is_dataclass(option)
        and not issubclass(option, Strategy)):
      return option
  return None


def _nested_part(part: type, factory: Any, owner: str, key: str, value: Any,
                 changes: Mapping[str, Any] | None, what: str, prefix: str) -> Any:
  """A dataclass-valued parameter from a value or a dict, then `key.<field>` changes."""
  if value is None and changes:
    value = _default(factory, key)
  if isinstance(value, part):
    if not changes:
      return value
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(part) if f.init}
  elif isinstance(value, Mapping):
    fields = dict(value)
  else:
    raise ValueError(f"{what} {prefix}{key}={value}: strategy {owner!r} takes {key} as a "
                     f"{part.__name__} (a dict, or {key}.<field>=...), got {value!r}.")
  fields.update(changes or {})
  hints = typing.get_type_hints(part)
  valid = [f.name for f in dataclasses.fields(part) if f.init]
  unknown = sorted(set(fields) - set(valid))
  if unknown:
    raise ValueError(f"{what} {prefix}{key}: unknown field(s) {unknown} of {part.__name__}; "
                     f"valid: {', '.join(valid)}.")
  return part(**{name: _typed_value(owner, f"{prefix}{key}.{name}", hints[name], v, what)
                 for name, v in fields.items()})


def _default(factory: Any, key: str) -> Any:
  if dataclasses.is_dataclass(factory):
    for field in dataclasses.fields(factory):
      if field.name == key:
        if field.default is not dataclasses.MISSING:
          return field.default
        if field.default_factory is not dataclasses.MISSING:
          return field.default_factory()
  else:
    default = inspect.signature(factory).parameters[key].default
    if default is not inspect.Parameter.empty:
      return default
  raise ValueError(f"parameter {key!r} has no default to change; give it a strategy name.")


def _typed_value(strategy: str, shown: str, hint: Any, value: Any, what: str) -> Any:
  """`value` as the parameter's type; `shown` is its name in errors (`base.tau`)."""
  key = shown.rpartition(".")[2]
  allowed = _allowed_types(hint)
  if not all(t in _PLAIN_TYPES for t in allowed):
    return value
  if isinstance(value, str) and str not in allowed:
    value = parse_value(value)
  try:
    return coerce(key, hint, value, key)
  except ValueError:
    raise ValueError(f"{what} {shown}={value}: strategy {strategy!r} takes {key} as "
                     f"{_type_names(hint)}, got {value!r}.") from None


def _allowed_types(hint: Any) -> tuple[Any, ...]:
  """The types a (union) annotation allows, generics by their origin (`tuple[int]` -> tuple)."""
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  return tuple(typing.get_origin(t) or t for t in (typing.get_args(hint) if union else (hint,)))


def _type_names(hint: Any) -> str:
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  allowed = typing.get_args(hint) if union else (hint,)
  return " or ".join("None" if t is type(None) else getattr(typing.get_origin(t) or t,
                                                             "__name__", str(t))
                     for t in allowed)

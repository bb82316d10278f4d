"""Command-line arguments shared by `lookum generate`, `lookum eval` and `lookum demo`."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from lookum_jax.configfile import coerce, parse_value
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.config import CACHE_MODES
from lookum_jax.sampling.strategies import strategy_names

# Shortcut flags for common strategy parameters: flag -> params key.
_SHORTCUTS = {
    "paths": "paths", "pool_size": "pool_size", "tau": "tau", "gamma": "gamma",
}


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
  """`["a=1", "b=x"]` -> `{"a": 1, "b": "x"}`; a ValueError names a malformed item."""
  out = {}
  for item in items or []:
    if "=" not in item:
      raise ValueError(f"{what} {item!r} must look like key=value.")
    key, value = item.split("=", 1)
    out[key.strip().replace("-", "_")] = parse_value(value.strip())
  return out


# Field types `typed_strategy_params` checks; other annotations are left to the params class.
_PLAIN_TYPES = (int, float, bool, str, tuple, type(None))


def _strategy_param_types(strategy: str) -> dict[str, Any]:
  """Annotated field types of a strategy's params dataclass ({} for an unknown strategy,
  which `SamplerConfig` then reports with the valid names)."""
  try:
    config = SamplerConfig(strategy=strategy)
  except ValueError:
    return {}
  params = config.strategy  # strategies are values: their fields are their parameters
  if not dataclasses.is_dataclass(params) or isinstance(params, type):
    return {}
  try:
    return typing.get_type_hints(type(params))
  except NameError:
    return {}


def _plain_types(hint: Any) -> tuple[type, ...] | None:
  union = typing.get_origin(hint) in (typing.Union, types.UnionType)
  allowed = tuple(typing.get_origin(t) or t for t in (typing.get_args(hint) if union
                                                          else (hint,)))
  return allowed if all(t in _PLAIN_TYPES for t in allowed) else None


def typed_strategy_params(strategy: str, params: dict[str, Any],
                          what: str = "--param") -> dict[str, Any]:
  """`params` converted to the types of `strategy`'s parameters where that is lossless
  (`paths=2` -> 2, `tau=1` -> 1.0).

  Raises:
    ValueError: naming the parameter and its expected type (`--param tau=abc`); unknown
      names are left for `SamplerConfig`, which lists the valid ones.
  """
  hints = _strategy_param_types(strategy)
  out = {}
  for key, value in params.items():
    allowed = _plain_types(hints[key]) if key in hints else None
    if allowed is None:
      out[key] = value
      continue
    try:
      out[key] = coerce(key, hints[key], value, f"{what} {key}={value}")
    except ValueError:
      names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
      raise ValueError(f"{what} {key}={value}: strategy {strategy!r} takes {key} as {names}, "
                       f"got {value!r}.") from None
  return out


def add_sampler_arguments(parser: argparse.ArgumentParser, *, gen_length: int | None = 128,
                          block_length: int | None = 32, steps: int | None = None) -> None:
  """Adds the sampler flags; `None` defaults are filled in later (e.g. from the task)."""
  group = parser.add_argument_group("sampler")
  group.add_argument("--strategy", default="low_confidence",
                     help="unmasking strategy: " + ", ".join(strategy_names()) +
                     ", policy and policy_lookum (need --policy)")
  group.add_argument("--gen-length", type=int, default=gen_length, help="response tokens")
  group.add_argument("--block-length", type=int, default=block_length,
                     help="semi-AR block size (default: gen length = full diffusion)")
  group.add_argument("--steps", type=int, default=steps,
                     help="denoising steps for scheduled strategies (default: gen length, "
                     "one token per step)")
  group.add_argument("--temperature", type=float, default=0.0)
  group.add_argument("--cfg-scale", type=float, default=0.0)
  group.add_argument("--param", action="append", metavar="KEY=VALUE",
                     help="a strategy parameter (repeatable), e.g. --param tau=0.8")
  group.add_argument("--paths", type=int, help="lookum: candidate paths K")
  group.add_argument("--pool-size", type=int, help="lookum: pool of most certain positions")
  group.add_argument("--tau", type=float, help="threshold (or lookum base=threshold): tau")
  group.add_argument("--gamma", type=float, help="entropy_bounded: entropy budget")
  group.add_argument("--policy", help="policy / policy_lookum: a trained policy directory")
  group.add_argument("--cache", choices=CACHE_MODES, default="none",
                     help="KV cache: none, prefix or dual (Fast-dLLM; default none)")
  group.add_argument("--cache-refresh", type=int, default=0, metavar="N",
                     help="with a cache, also refresh it every N steps inside a block")
  group.add_argument("--logits-eos-inf", action="store_true")
  group.add_argument("--confidence-eos-eot-inf", action="store_true")


def sampler_config_from_args(args: argparse.Namespace) -> SamplerConfig:
  """The `SamplerConfig` the flags describe (ValueError on a bad combination)."""
  params = parse_key_values(args.param, "--param")
  for flag, key in _SHORTCUTS.items():
    value = getattr(args, flag, None)
    if value is not None:
      params[key] = value
  params = typed_strategy_params(args.strategy, params)
  gen_length = args.gen_length
  block_length = gen_length if args.block_length is None else args.block_length
  steps = gen_length if args.steps is None else args.steps
  return SamplerConfig(
      gen_length=gen_length, block_length=block_length, steps=steps,
      temperature=args.temperature, cfg_scale=args.cfg_scale, strategy=args.strategy,
      params=params, cache=getattr(args, "cache", "none"),
      cache_refresh=getattr(args, "cache_refresh", 0), logits_eos_inf=args.logits_eos_inf,
      confidence_eos_eot_inf=args.confidence_eos_eot_inf)

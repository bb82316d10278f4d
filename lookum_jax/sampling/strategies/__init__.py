"""Unmasking strategies, and the one table from names to strategy classes.

Strategies are values (`LowConfidence()`, `Threshold(tau=0.9)`, `LookUM(paths=2)`,
`policy_rl.Policy()`); names exist only for command lines and config files, through
`STRATEGIES` and `make_strategy`. Entries given as `"module:Class"` are imported when first
used, so naming a strategy never requires importing its package up front.
"""

from __future__ import annotations

import importlib
from typing import Any

from lookum_jax.sampling.strategies.base import (
    StepView,
    Strategy,
    commit_at_least_one,
    commit_top_k,
    pytree_dataclass,
    rank_positions,
    static_field,
)
from lookum_jax.sampling.strategies.rules import (
    Entropy,
    EntropyBounded,
    LowConfidence,
    Margin,
    RandomOrder,
    Rule,
    Threshold,
)

STRATEGIES: dict[str, type[Strategy] | str] = {
    "low_confidence": LowConfidence,
    "random": RandomOrder,
    "margin": Margin,
    "entropy": Entropy,
    "threshold": Threshold,
    "entropy_bounded": EntropyBounded,
    "lookum": "lookum_jax.sampling.lookum:LookUM",
    "policy": "policy_rl.strategy:Policy",
    "policy_lookum": "policy_rl.lookum:PolicyLookUM",
}


def strategy_names() -> list[str]:
  return sorted(STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
  """The class behind a strategy name."""
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}.")
  entry = STRATEGIES[name]
  if isinstance(entry, str):
    module, attr = entry.split(":")
    entry = getattr(importlib.import_module(module), attr)
  return entry


def make_strategy(strategy: str | Strategy, params: Any = None) -> Strategy:
  """A strategy value from a name and its parameters (a dict, or None for the defaults), or
  the value itself (then `params` must be None)."""
  if isinstance(strategy, Strategy):
    if params is not None:
      raise ValueError(f"params are given twice: the strategy value {strategy!r} already holds "
                       "its parameters; drop params.")
    return strategy
  if not isinstance(strategy, str):
    raise ValueError(f"strategy must be a name or a Strategy value, got {strategy!r}.")
  cls = strategy_class(strategy)
  if isinstance(params, cls):
    return params
  params = {} if params is None else params
  if not isinstance(params, dict):
    raise ValueError(f"strategy {strategy!r} takes its parameters as a dict, got "
                     f"{type(params).__name__}.")
  names = cls.param_names()
  unknown = sorted(set(params) - set(names))
  if unknown:
    valid = ", ".join(sorted(names)) or "none"
    raise ValueError(f"unknown parameter(s) {unknown} for strategy {strategy!r}; valid "
                     f"parameters: {valid}.")
  return cls.from_params(params)


__all__ = [
    "STRATEGIES", "Entropy", "EntropyBounded", "LowConfidence", "Margin", "RandomOrder",
    "Rule", "StepView", "Strategy", "Threshold", "commit_at_least_one", "commit_top_k",
    "make_strategy", "pytree_dataclass", "rank_positions", "static_field", "strategy_class",
    "strategy_names",
]

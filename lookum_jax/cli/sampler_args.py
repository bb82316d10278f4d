"""The sampler flags shared by `lookum generate` and `lookum eval`, and the learned policy
that `--strategy policy` reads. Flags become a sampler through the one parser,
`lookum_jax.parsing`; `policy_rl`'s strategies are registered with it here, at the edge."""

from __future__ import annotations

import argparse
from typing import Any

import policy_rl
from lookum_jax.configfile import parse_key_values
from lookum_jax.parsing import parse_sampler, strategy_names
from lookum_jax.sampling.cache import CACHE_MODES
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.refresh import BLOCK_STARTS
from lookum_jax.sampling.strategies import Strategy

policy_rl.register_strategies()  # --strategy policy / policy_lookum

# Shortcut flags for common strategy parameters: flag -> params key.
_SHORTCUTS = {"paths": "paths", "pool_size": "pool_size", "tau": "tau", "gamma": "gamma"}


def add_sampler_arguments(parser: argparse.ArgumentParser, *, gen_length: int | None = 128,
                          block_length: int | None = 32, steps: int | None = None) -> None:
  """Adds the sampler flags; `None` defaults are filled in later (e.g. from the task)."""
  group = parser.add_argument_group("sampler")
  group.add_argument("--strategy", default="low_confidence",
                     help="unmasking strategy: " + ", ".join(strategy_names()) +
                     " (policy and policy_lookum need --policy)")
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
  group.add_argument("--cache", choices=tuple(CACHE_MODES), default="none",
                     help="KV cache: none, prefix or dual (Fast-dLLM; default none)")
  group.add_argument("--cache-refresh", default="0", metavar="N|adaptive",
                     help="with a cache, also refresh it every N steps inside a block, or "
                     "'adaptive': when a row's cache drifts past --refresh-threshold")
  group.add_argument("--refresh-threshold", type=float, default=0.1, metavar="T",
                     help="--cache-refresh adaptive: the drift (relative change of the "
                     "window's keys/values since the cache was built) that triggers a refresh")
  group.add_argument("--refresh-from-layer", type=int, default=0, metavar="L",
                     help="--cache-refresh adaptive: measure the drift on layers L and deeper")
  group.add_argument("--block-start", choices=tuple(BLOCK_STARTS), default="full",
                     help="with a cache, start each block with a full forward, or recompute "
                     "only the finished block and this one (vicinity, dInfer-style)")
  group.add_argument("--logits-eos-inf", action="store_true")
  group.add_argument("--confidence-eos-eot-inf", action="store_true")


def sampler_config_from_args(args: argparse.Namespace) -> SamplerConfig:
  """The `SamplerConfig` the flags describe (ValueError on a bad combination)."""
  params = parse_key_values(args.param, "--param")
  for flag, key in _SHORTCUTS.items():
    value = getattr(args, flag, None)
    if value is not None:
      params[key] = value
  gen_length = args.gen_length
  return parse_sampler(dict(
      gen_length=gen_length,
      block_length=gen_length if args.block_length is None else args.block_length,
      steps=gen_length if args.steps is None else args.steps,
      temperature=args.temperature, cfg_scale=args.cfg_scale, strategy=args.strategy,
      params=params, cache=args.cache, cache_refresh=str(args.cache_refresh),
      refresh_threshold=args.refresh_threshold, refresh_from_layer=args.refresh_from_layer,
      block_start=args.block_start,
      logits_eos_inf=args.logits_eos_inf, confidence_eos_eot_inf=args.confidence_eos_eot_inf),
      what="sampler flag", params_what="--param")


def load_strategy_policy(strategy: Strategy, policy_dir: str | None) -> Any:
  """The learned policy a strategy reads (`policy`, `policy_lookum`), else None.

  Raises:
    ValueError: when the strategy needs a policy and `policy_dir` is not given.
  """
  if not strategy.needs_policy:
    return None
  if not policy_dir:
    raise ValueError(
        f"--strategy {strategy.name} needs --policy PATH (a trained policy directory, e.g. "
        "lookum_jax/assets/toy-sudoku/policy).")
  from policy_rl import load_policy

  return load_policy(policy_dir)

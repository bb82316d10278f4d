"""`SamplerConfig`: every knob of one generation, a pytree whose structure is static (lengths,
cache mode, the strategy's structure) and whose numbers are traced (temperature, cfg_scale,
the strategy's knobs), so the compiled program is reused across a sweep over a number."""

from __future__ import annotations

import dataclasses
from typing import Any

from lookum_jax.sampling.cache import CACHE_MODES, CacheMode, Mode, cache_mode
from lookum_jax.sampling.refresh import (
    BlockStart,
    block_start_mode,
    check_refresh,
    refresh_schedule,
)
from lookum_jax.sampling.schedule import num_transfer_tokens
from lookum_jax.sampling.strategies import LowConfidence, Strategy
from lookum_jax.sampling.types import check_number, concrete, pytree_dataclass, static_field

__all__ = ["CACHE_MODES", "SamplerConfig", "strategy_summary"]


@pytree_dataclass
class SamplerConfig:
  """How to decode.

  Attributes:
    gen_length: response length in tokens (all start masked).
    block_length: semi-autoregressive block size; `gen_length` means full diffusion.
    steps: total denoising steps (schedule-based strategies); `steps // num_blocks`
      per block. Ignored by strategies that choose their own commit counts
      (threshold, entropy_bounded, the policy), whose blocks last until committed.
    temperature: Gumbel-noise temperature for the candidate tokens (0 = argmax). Traced;
      whether it is 0 is structure (`sampled`).
    cfg_scale: classifier-free guidance scale (0 = off; > 0 costs a second forward). Traced;
      whether it is 0 is structure (`guided`).
    strategy: the strategy value (`LowConfidence()`, `Threshold(tau=0.9)`,
      `LookUM(paths=2, base=Threshold(tau=0.9))`, `policy_rl.Policy(...).with_policy(p)`);
      names exist only at the edge (`lookum_jax.parsing.parse_strategy` / `parse_sampler`).
    cache: the KV cache mode, a value (`lookum_jax.sampling.cache`): `NoCache()` (every step
      forwards the whole sequence), `PrefixCache()` (Fast-dLLM's prefix cache: each block
      starts with a full forward that stores every layer's keys/values, then steps forward
      `x[block_start:]` against the cached prefix) or `DualCache()` (Fast-dLLM's dual cache:
      steps forward only the current block against cached prefix and suffix). A name of
      `CACHE_MODES` ("none", "prefix", "dual") is turned into its value on construction;
      the JSON form (`to_dict`) is the name.
    cache_refresh: with a cache, also refresh it (a full forward) every `cache_refresh`
      steps inside a block; 0 refreshes only at block starts (Fast-dLLM); "adaptive"
      refreshes a row's cache when its drift passes `refresh_threshold`
      (`lookum_jax.sampling.refresh`). Kept as given (its JSON form); the schedule it
      describes is the value `refresh_schedule` (`PeriodicRefresh(n)`, `AdaptiveRefresh()`).
    refresh_threshold: the adaptive refresh's drift threshold (the relative change of the
      window's keys/values since the cache was built, at the worst measured layer). Traced:
      a sweep over it compiles once.
    refresh_from_layer: the adaptive refresh measures the drift on layers from this one on
      (0 = all; the deeper layers drift most).
    block_start: a value (`lookum_jax.sampling.refresh`): `FullStart()` (each block starts
      with a full forward, Fast-dLLM) or `VicinityStart()` (blocks after the first recompute
      only the block just finished and this one against the cached rest, dInfer-style; with
      the prefix cache the response from the finished block on). The names "full" and
      "vicinity" are turned into their values on construction; the JSON form is the name.
    logits_eos_inf: never predict EOS (LLaDA option).
    confidence_eos_eot_inf: commit positions predicting EOS/EOT only after every
      other position of the block (LLaDA option; see `StepView.demoted`).
    mask_token_id: overrides the model config's mask token.
  """

  gen_length: int = static_field(128)
  block_length: int = static_field(32)
  steps: int = static_field(128)
  temperature: float = 0.0
  cfg_scale: float = 0.0
  strategy: Strategy = LowConfidence()
  cache: CacheMode | str = static_field("none")
  cache_refresh: int | str = static_field(0)
  refresh_threshold: float = 0.1
  refresh_from_layer: int = static_field(0)
  block_start: BlockStart | str = static_field("full")
  logits_eos_inf: bool = static_field(False)
  confidence_eos_eot_inf: bool = static_field(False)
  mask_token_id: int | None = static_field(None)

  # Computed in __post_init__ (from the concrete numbers; the refresh schedule from
  # `cache_refresh`); part of the compiled structure.
  derived_static = ("sampled", "guided", "refresh_schedule")

  def __post_init__(self):
    for name in ("gen_length", "block_length", "steps"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"SamplerConfig.{name} must be a positive int, got {value!r}.")
    if self.gen_length % self.block_length:
      raise ValueError(
          f"gen_length ({self.gen_length}) must be a multiple of block_length "
          f"({self.block_length}); e.g. set block_length to a divisor of gen_length.")
    check_number("SamplerConfig.temperature", "", self.temperature, lambda v: v >= 0, ">= 0")
    check_number("SamplerConfig.cfg_scale", "", self.cfg_scale, lambda v: v >= 0, ">= 0")
    # A traced number (a config rebuilt inside a trace) keeps the general program.
    temperature, cfg_scale = concrete(self.temperature), concrete(self.cfg_scale)
    object.__setattr__(self, "sampled", temperature is None or temperature > 0)
    object.__setattr__(self, "guided", cfg_scale is None or cfg_scale > 0)
    # Names become values here, once: the one lookup of each table.
    object.__setattr__(self, "cache", cache_mode(self.cache))
    object.__setattr__(self, "block_start", block_start_mode(self.block_start))
    check_refresh(self)
    object.__setattr__(self, "refresh_schedule", refresh_schedule(self.cache_refresh))
    if not isinstance(self.strategy, Strategy):
      raise ValueError(
          f"SamplerConfig.strategy must be a strategy value (e.g. Threshold(tau=0.9)), got "
          f"{self.strategy!r}; turn a name and parameters into one with "
          "lookum_jax.parsing.parse_strategy(name, params).")
    if self.strategy.uses_schedule:
      if self.steps % self.num_blocks:
        raise ValueError(
            f"steps ({self.steps}) must be a multiple of the number of blocks "
            f"({self.num_blocks} = gen_length {self.gen_length} / block_length "
            f"{self.block_length}); e.g. steps="
            f"{self.num_blocks * max(1, self.steps // self.num_blocks)}.")
      if self.steps_per_block > self.block_length:
        raise ValueError(
            f"{self.steps_per_block} steps per block exceed the block's {self.block_length} "
            f"tokens: some steps would commit nothing; use steps <= gen_length "
            f"({self.gen_length}).")
    self.strategy.check(self)

  @property
  def noise_temperature(self) -> Any:
    """The candidates' Gumbel temperature, a concrete 0 when not `sampled` (plain argmax)."""
    return self.temperature if self.sampled else 0.0

  @property
  def num_blocks(self) -> int:
    return self.gen_length // self.block_length

  @property
  def steps_per_block(self) -> int:
    return self.steps // self.num_blocks

  @property
  def strategy_name(self) -> str:
    return self.strategy.name

  @property
  def max_block_steps(self) -> int:
    """Upper bound on the denoising steps of one block: the schedule, or one token per step."""
    return self.steps_per_block if self.strategy.uses_schedule else self.block_length

  @property
  def max_steps(self) -> int:
    """Upper bound on denoising steps of a generation."""
    return self.max_block_steps * self.num_blocks

  @property
  def window_length(self) -> int:
    """Response positions a step's logits cover: all of them, or the block under a cache."""
    return self.cache.window_length(self)

  def block_schedule(self):
    """Commit counts for the steps of one block (every block starts fully masked)."""
    return num_transfer_tokens(self.block_length, self.steps_per_block)

  def with_policy(self, policy: Any) -> SamplerConfig:
    """This config with its strategy reading the learned policy module `policy`."""
    return self.replace(strategy=self.strategy.with_policy(policy))

  def to_dict(self) -> dict[str, Any]:
    """Every field but the strategy in its JSON form: the cache and the block start by name
    (`"cache": "prefix"`), as configs and stored results spell them."""
    return {f.name: _json_form(getattr(self, f.name)) for f in dataclasses.fields(self)
            if f.name != "strategy"}

  def replace(self, **changes: Any) -> SamplerConfig:
    """A copy with `changes` (checked as a new config)."""
    return dataclasses.replace(self, **changes)


def _json_form(value: Any) -> Any:
  return value.name if isinstance(value, Mode) else value


def strategy_summary(strategy: Strategy) -> dict[str, Any]:
  """`{"strategy": name, **params}` for records."""
  return {"strategy": strategy.name, **strategy.to_dict()}

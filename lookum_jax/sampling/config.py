"""`SamplerConfig`: every knob of one generation, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lookum_jax.sampling import strategies
from lookum_jax.sampling.schedule import num_transfer_tokens

# Strategies registered by `policy_rl` (imported on demand) that take a trained policy as `aux`.
POLICY_STRATEGIES = ("policy", "policy_lookum")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """How to decode.

  Attributes:
    gen_length: response length in tokens (all start masked).
    block_length: semi-autoregressive block size; `gen_length` means full diffusion.
    steps: total denoising steps (schedule-based strategies); `steps // num_blocks`
      per block. Ignored by strategies that choose their own commit counts
      (threshold, entropy_bounded), which stop when the response is committed.
    temperature: Gumbel-noise temperature for the candidate tokens (0 = argmax).
    cfg_scale: classifier-free guidance scale (0 = off; > 0 costs a second forward).
    strategy: a registered strategy name (`lookum_jax.sampling.strategies.strategy_names()`).
    params: the strategy's own parameters, a dict or its params dataclass.
    logits_eos_inf: never predict EOS (LLaDA option).
    confidence_eos_eot_inf: commit positions predicting EOS/EOT only after every
      other position of the block (LLaDA option; see `StepView.demoted`).
    mask_token_id: overrides the model config's mask token.
  """

  gen_length: int = 128
  block_length: int = 32
  steps: int = 128
  temperature: float = 0.0
  cfg_scale: float = 0.0
  strategy: str = "low_confidence"
  params: Any = None
  logits_eos_inf: bool = False
  confidence_eos_eot_inf: bool = False
  mask_token_id: int | None = None

  def __post_init__(self):
    for name in ("gen_length", "block_length", "steps"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"SamplerConfig.{name} must be a positive int, got {value!r}.")
    if self.gen_length % self.block_length:
      raise ValueError(
          f"gen_length ({self.gen_length}) must be a multiple of block_length "
          f"({self.block_length}); e.g. set block_length to a divisor of gen_length.")
    if self.temperature < 0:
      raise ValueError(f"SamplerConfig.temperature must be >= 0, got {self.temperature}.")
    if self.cfg_scale < 0:
      raise ValueError(f"SamplerConfig.cfg_scale must be >= 0, got {self.cfg_scale}.")
    strategy = strategies.get_strategy(self.strategy)
    object.__setattr__(self, "params", strategy.make_params(self.params))
    if strategy.schedule_for(self.params):
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

  @property
  def num_blocks(self) -> int:
    return self.gen_length // self.block_length

  @property
  def steps_per_block(self) -> int:
    return self.steps // self.num_blocks

  @property
  def strategy_impl(self) -> strategies.Strategy:
    return strategies.get_strategy(self.strategy)

  @property
  def max_steps(self) -> int:
    """Upper bound on denoising steps: the schedule, or one token per step."""
    if self.strategy_impl.schedule_for(self.params):
      return self.steps
    return self.gen_length

  def block_schedule(self):
    """Commit counts for the steps of one block (every block starts fully masked)."""
    return num_transfer_tokens(self.block_length, self.steps_per_block)

  def replace(self, **changes: Any) -> SamplerConfig:
    """A copy with `changes`; a new strategy without new params gets its defaults."""
    if changes.get("strategy", self.strategy) != self.strategy and "params" not in changes:
      changes["params"] = None
    return dataclasses.replace(self, **changes)

"""Strategies as values: the interface, and the selection rules strategies share.

A strategy is a frozen, hashable dataclass (a static argument of the compiled program, as
gemma's samplers are): its fields are its parameters, and it knows whether it follows the
step schedule. Most strategies are a per-sequence rule

    select(view: StepView, key) -> commit [W] bool

that the loop `vmap`s over the batch (`Strategy.step` turns it into a step). A strategy
that needs more (look-ahead forwards, a learned policy, its own carried state) overrides
`step(ctx, state)` instead; see `lookum_jax.sampling.loop.StepContext`.

Every per-position array a strategy sees covers the loop's *window* of response positions
(`[W]`: the whole response, or the current block under a KV cache), never the prompt: noise
drawn over it is drawn over response positions by construction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class StepView:
  """What a per-sequence strategy sees at one step, over the window of W response positions.

  Attributes:
    logits: `[W, V]` float32 logits of the current canvas (after CFG / EOS options).
    candidates: `[W]` the token each position would receive (argmax, Gumbel-noised
      when temperature > 0; never the mask token).
    confidence: `[W]` softmax probability of `candidates`.
    certainty: `[W]` log-odds of `candidates`, `log p - log(1 - p)`, computed from the
      logits so that probabilities that round to 1.0 in float32 still rank apart. Rank by
      this; compare `confidence` with thresholds.
    eligible: `[W]` masked and inside the current block: the only committable positions.
    masked: `[W]` positions still masked (eligible or in a later block).
    demoted: `[W]` positions to commit only after every other eligible one
      (`confidence_eos_eot_inf`: candidate is EOS/EOT).
    num_transfer: `[]` int32 the schedule's commit count for this step.
    positions: `[W]` int32 response index of each window position (0 = first response
      token); key per-position randomness on it (`scores.position_uniform`) so that a draw
      does not depend on the window's extent or the batch's padding.
    mask_token_id: the mask token (never a candidate).
  """

  logits: jax.Array
  candidates: jax.Array
  confidence: jax.Array
  certainty: jax.Array
  eligible: jax.Array
  masked: jax.Array
  demoted: jax.Array
  num_transfer: jax.Array
  positions: jax.Array
  mask_token_id: int | None = struct.field(pytree_node=False, default=None)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """Base of every unmasking strategy (subclass as a frozen dataclass).

  Class attributes:
    name: the strategy's name at the command line and in configs.
    needs_policy: the strategy reads a learned policy (`generate(..., policy=...)`).
  """

  name: ClassVar[str] = ""
  needs_policy: ClassVar[bool] = False

  @property
  def uses_schedule(self) -> bool:
    """Commits `num_transfer` tokens per step (needs `steps`); otherwise it decides the count
    itself and a block lasts until it is fully committed."""
    return True

  def select(self, view: StepView, key: jax.Array) -> jax.Array:
    """Per-sequence selection: `commit [W]` bool, a subset of `view.eligible`."""
    raise NotImplementedError(f"{type(self).__name__} defines neither select nor step.")

  def step(self, ctx: Any, state: Any) -> Any:
    """One batched step `(StepContext, LoopState) -> LoopState`; it must add the forward
    passes it spends to `state.nfe`. Default: `select`, commit, forward."""
    return ctx.select_step(state, self.select)

  def init_state(self, ctx: Any, batch_size: int) -> Any:
    """The strategy's own state carried through the loop (default: none)."""
    del ctx, batch_size
    return None

  def check(self, config: Any) -> None:
    """Raises `ValueError` for a `SamplerConfig` this strategy cannot run with."""
    del config

  def decode(self, run: Any, *args: Any, **kwargs: Any) -> Any:
    """Runs the loop: `run(*args, **kwargs)` (`loop.decode_core`). A strategy that needs the
    rows arranged otherwise (SMC's particles) wraps it here, outside the loop core."""
    return run(*args, **kwargs)

  def to_dict(self) -> dict[str, Any]:
    """The strategy's parameters, for result records."""
    return dataclasses.asdict(self)

  def label(self) -> str:
    """A short human-readable name with the parameters that differ from the defaults."""
    defaults = type(self)()
    changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
               if getattr(self, f.name) != getattr(defaults, f.name)]
    return self.name + (f"({', '.join(changed)})" if changed else "")


def rank_positions(score: jax.Array, eligible: jax.Array, demoted: jax.Array) -> jax.Array:
  """Rank `[W]` of each position (0 = commit first): eligible, not demoted, then score.

  Ties in score go to the lower index (as `lax.top_k`). Ineligible positions rank last.
  """
  # lexsort: the last key is the primary one.
  order = jnp.lexsort((-score, demoted, ~eligible))
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))


def commit_top_k(score: jax.Array, view: StepView, k: jax.Array) -> jax.Array:
  """Commits the `k` highest-scoring eligible positions."""
  rank = rank_positions(score, view.eligible, view.demoted)
  return (rank < k) & view.eligible


def commit_at_least_one(chosen: jax.Array, score: jax.Array, view: StepView) -> jax.Array:
  """`chosen & eligible`, or the single best eligible position if that is empty."""
  chosen = chosen & view.eligible
  best = commit_top_k(score, view, jnp.int32(1))
  return jnp.where(jnp.any(chosen), chosen, best)


def check_unit_interval(owner: str, name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{owner} {name} must be in [0, 1], got {value!r}.")

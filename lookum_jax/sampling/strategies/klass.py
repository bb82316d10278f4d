"""KLASS, KL-Adaptive Stability Sampling (Kim, Hong, Jung, Park and Yun, "KLASS: KL-Guided Fast
Inference in Masked Diffusion Models", NeurIPS 2025, arXiv:2511.05664; authors' code
github.com/shkim0116/KLASS)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.sampling.strategies.base import (
  Strategy,
  check_number,
  check_unit_interval,
  commit_at_least_one,
  pytree_dataclass,
  static_field,
)
from lookum_jax.sampling.types import LoopState, StepContext, StepView


def max_confidence(view: StepView, kl: Callable[[], jax.Array]) -> jax.Array:
  """Prefer the ready position of highest confidence (its certainty)."""
  del kl
  return view.certainty


def min_kl(view: StepView, kl: Callable[[], jax.Array]) -> jax.Array:
  """Prefer the ready position of lowest KL (`kl()`: `[B, W]`, inf outside the block)."""
  del view
  return -kl()


# `KLASS.unmask`'s names: which ready positions a step commits; every one ("all", None), or
# the one a preference `(view, kl) -> [B, W]` ranks first.
UNMASK_MODES: dict[str, Callable[[StepView, Callable[[], jax.Array]], jax.Array] | None] = {
    "all": None, "max_conf": max_confidence, "min_kl": min_kl}


@struct.dataclass
class KLASSState:
  """What KLASS carries between steps, over the current block only (`[B, block, ...]`).

  Attributes:
    log_probs: `[B, block, V]` float32 log-probabilities of the block's positions at the
      row's previous step (the previous distribution the KL is taken against).
    stable_steps: `[B, block]` int32 consecutive most recent steps whose KL stayed below
      `kl_threshold`: "the last `history` KLs are all small" is `stable_steps >= history`.
  """

  log_probs: jax.Array
  stable_steps: jax.Array


@pytree_dataclass
class KLASS(Strategy):
  """KL-Adaptive Stability Sampling: commit the masked positions that are confident *and*
  stable.

  At a row's step t, position i of the current block is *ready* when
    * its candidate's probability exceeds `conf_threshold` (strictly), and
    * `KL(p_t^i || p_{t-1}^i) < kl_threshold` held at each of the last `history` steps,
      with `p_t^i` the model's predictive distribution at i (full vocabulary).
  Every ready position is committed (`unmask="all"`, the paper's default; `"max_conf"` and
  `"min_kl"` commit only the ready position of highest confidence / lowest KL, the authors'
  code's other options). When none is ready, the single most confident eligible position is
  committed. Not scheduled: a block lasts until it is committed.

  Defaults are the authors' `stable_confident_decode` defaults (0.9, 0.01, 2); their LLaDA
  GSM8K script runs 0.6, 0.015, 2 in blocks of 64 (the `klass` preset's thresholds).

  Readings where the authors' code leaves room (we keep to the rule as stated above):
    * Fallback. The code commits the LLaDA schedule's count when nothing is ready; its
      published runs use steps = gen_length, where that count is 1, so we commit one (with
      fewer steps its loop can end a block with masks left).
    * History per block. A position's history starts at its block's first step (no KL on
      that step). The code keeps full-sequence histories, but its first block does the same
      (its initial "previous" distribution is all zeros: a KL of about 27 nats, never
      stable); for later blocks it would need the logits of the next block's positions,
      which a cached step does not compute, so this reading is the one every cache mode
      shares. With full diffusion (one block) the two agree.
    * Distributions are the clean softmax of the model's logits; the candidate (and its
      confidence) is Gumbel-noised when temperature > 0. The code takes the KL of the
      noised distributions, a new draw each step, which would rarely look stable.
    * Positions whose candidate is demoted (`confidence_eos_eot_inf`) are never ready, as
      LLaDA's option sets their confidence to -inf.

  Carries `KLASSState`: the previous step's log-probabilities of the block only,
  `[B, block_length, V]` float32 (plus an int per position), not the whole window: only
  the block's masked positions can be ready, and the exact KL needs the whole previous
  distribution (top-k log-probabilities would only bound it). At LLaDA-8B's shape (B = 8,
  block 32, V = 126464) that is 123.5 MiB.

  Attributes:
    conf_threshold: a ready position's candidate probability must exceed it (traced).
    kl_threshold: a ready position's KLs (nats) must stay below it (traced).
    history: consecutive steps the KL must have stayed below `kl_threshold` (static).
    unmask: "all", "max_conf" or "min_kl": which ready positions a step commits (static; a
      name in `UNMASK_MODES`).
  """

  name = "klass"
  needs_logits: ClassVar[bool] = True
  conf_threshold: float = 0.9
  kl_threshold: float = 0.01
  history: int = static_field(2)
  unmask: str = static_field("all")

  def __post_init__(self):
    check_unit_interval("klass", "conf_threshold", self.conf_threshold)
    check_number("klass", "kl_threshold", self.kl_threshold, lambda v: v >= 0,
                 ">= 0 (nats)")
    if (not isinstance(self.history, int) or isinstance(self.history, bool)
        or self.history < 1):
      raise ValueError(f"klass history must be an int >= 1 (steps the KL must stay below "
                       f"kl_threshold), got {self.history!r}.")
    if self.unmask not in UNMASK_MODES:
      raise ValueError(f"klass unmask must be one of {tuple(UNMASK_MODES)}, got "
                       f"{self.unmask!r}.")

  @property
  def uses_schedule(self) -> bool:
    return False

  def init_state(self, ctx: StepContext, batch_size: int) -> KLASSState:
    block = ctx.config.block_length
    return KLASSState(
        log_probs=jnp.zeros((batch_size, block, vocab_size(ctx, batch_size)), jnp.float32),
        stable_steps=jnp.zeros((batch_size, block), jnp.int32))

  def step(self, ctx: StepContext, state: LoopState) -> LoopState:
    noise_keys, _ = ctx.step_keys(state)
    view = ctx.view(state, noise_keys)
    carried: KLASSState = state.strategy_state
    block = ctx.config.block_length
    offset = ctx.block_start(state) - ctx.window_start(state)  # the block inside the window
    log_probs = jax.nn.log_softmax(
        jax.lax.dynamic_slice_in_dim(view.logits, offset, block, axis=1).astype(jnp.float32),
        axis=-1)  # [B, block, V]
    probs = jnp.exp(log_probs)
    # KL(p_t || p_{t-1}); tokens with p_t = 0 add nothing (a -inf logit, e.g. EOS banned).
    kl = jnp.sum(jnp.where(probs > 0, probs * (log_probs - carried.log_probs), 0.0), axis=-1)
    first = (state.step_in_block == 0)[:, None]  # no previous distribution in this block
    stable_steps = jnp.where(first | ~(kl < self.kl_threshold), 0, carried.stable_steps + 1)

    def to_window(block_values, fill):
      window = jnp.full(view.eligible.shape, fill, block_values.dtype)
      return jax.lax.dynamic_update_slice_in_dim(window, block_values, offset, axis=1)

    stable = to_window(stable_steps >= self.history, False)
    ready = (stable & (view.confidence > self.conf_threshold) & view.eligible
             & ~view.demoted)
    prefer = UNMASK_MODES[self.unmask]
    if prefer is not None:
      preference = prefer(view, lambda: to_window(kl, jnp.inf))
      best = jnp.argmax(jnp.where(ready, preference, -jnp.inf), axis=-1)
      ready = ready & (jnp.arange(ready.shape[1]) == best[:, None])
    commit = jax.vmap(commit_at_least_one)(ready, view.certainty, view)
    active = ctx.active(state)[:, None]
    carried = KLASSState(
        log_probs=jnp.where(active[..., None], log_probs, carried.log_probs),
        stable_steps=jnp.where(active, stable_steps, carried.stable_steps))
    state = ctx.commit(state, commit, view.candidates).replace(strategy_state=carried)
    return ctx.refresh_logits(state)


def vocab_size(ctx: StepContext, batch_size: int) -> int:
  """V of the logits the loop's forward returns (the model's output width)."""
  total = ctx.prompt_length + ctx.config.gen_length
  canvas = jax.ShapeDtypeStruct((batch_size, total), jnp.int32)
  logits = jax.eval_shape(
      lambda tokens: ctx.forward.full(tokens, ctx.attention_mask, ctx.prompt_length, 1)[0],
      canvas)
  return logits.shape[-1]


def carried_bytes(batch_size: int, block_length: int, vocab: int) -> int:
  """Bytes of `KLASSState` at a shape: float32 `[B, block, V]` plus int32 `[B, block]`."""
  return batch_size * block_length * (vocab * 4 + 4)

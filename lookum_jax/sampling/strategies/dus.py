"""DUS: the dilated unmasking schedule (Luxembourg, Permuter and Nachmani 2025, "Plan for
Speed: Dilated Scheduling for Masked Diffusion Language Models", arXiv:2506.19037)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lookum_jax.sampling.strategies.base import Strategy, check_number, pytree_dataclass
from lookum_jax.sampling.types import LoopState, StepContext, StepView


def _whole_number(minimum: int):
  return lambda v: float(v).is_integer() and v >= minimum


def dilation_groups(block_length: int, base: jax.Array | int, skip: jax.Array | int
                    ) -> jax.Array:
  """`[block_length]` int32 group of each block offset: the step (0, 1, ...) of the block at
  which DUS commits it. Traceable in `base` and `skip` (`block_length` is static).

  Round r takes every offset that is a multiple of the stride `s_r` and not taken yet, with
  `s_0 = block_length // base**skip` and `s_{r+1} = s_r // base`, while `s_r >= 1`; offsets
  left after the rounds form one last group; if that last group is smaller than the one
  before, the two merge (the authors' `merge_last_level`).
  """
  offsets = jnp.arange(block_length, dtype=jnp.int32)
  base = jnp.asarray(base, jnp.int32)
  skip = jnp.asarray(skip, jnp.int32)
  # With base >= 2 a stride reaches 0 after bit_length halvings: that many rounds suffice.
  rounds_max = max(block_length.bit_length(), 1)
  stride = jnp.int32(block_length)
  for i in range(rounds_max):  # stride = block_length // base**skip without overflow
    stride = jnp.where(i < skip, stride // base, stride)
  group = jnp.full((block_length,), -1, jnp.int32)
  rounds = jnp.int32(0)
  for r in range(rounds_max):
    live = stride >= 1
    hit = live & (group < 0) & (offsets % jnp.maximum(stride, 1) == 0)
    group = jnp.where(hit, r, group)
    rounds = rounds + live.astype(jnp.int32)
    stride = stride // base
  group = jnp.where(group < 0, rounds, group)  # the leftovers (an empty group if none)
  last = jnp.max(group)
  size_last = jnp.sum(group == last)
  size_before = jnp.sum(group == last - 1)
  merge = (last >= 1) & (size_last < size_before)
  return jnp.where(merge & (group == last), last - 1, group)


@pytree_dataclass
class DUS(Strategy):
  """DUS, the dilated unmasking scheduler (Luxembourg et al. 2025, arXiv:2506.19037).

  A positional schedule, not a confidence rule: each block of B positions is committed in
  coarse-to-fine dilated groups, one group per step, each group's candidates committed in
  parallel. With the defaults (base 2, skip 1) and B a power of two, the groups of a block
  of 8 are offsets {0, 4}, {2, 6}, {1, 3, 5, 7}: log2(B) steps, each group's positions
  non-adjacent, so (under the paper's first-order Markov argument) its joint entropy is
  close to the sum of its marginals. NFE is `(gen_length / B) * log2(B)`.

  Group of offset o: round r takes the multiples of the stride `s_r` not taken before, with
  `s_0 = B // base**skip`, `s_{r+1} = s_r // base`, while `s_r >= 1`; what is left forms a
  last group, merged into the one before when smaller (the authors' code,
  `dilated_unmask_levels` + `merge_last_level`). This rule is defined for every B, but
  when B is not a power of `base` the groups are uneven and the last one holds adjacent
  positions (B = 12: {0, 6}, {3, 9}, then the other 8 offsets in one step), so the
  non-adjacency the paper relies on is lost; the same holds for every B with base > 2.
  We run it as defined rather than refuse it (a block of 81 still decodes), and say so here.

  The step commits every eligible position of the block's lowest remaining group, so it
  needs no state: groups are keyed on `positions % block_length` (the offset in the
  block, independent of window and padding). It ignores confidence, `demoted` (the EOS
  option) and `steps` (`uses_schedule` is False); a block takes as many steps as it has
  groups. The authors' code optionally re-masks low-confidence tokens of a group
  (`confidence_threshold`); commits are final in this loop and that option, which the
  paper does not define, is not modelled.

  Attributes:
    base: a, the dilation base: each round divides the stride by it (integer >= 2; the
      paper's default 2). Traced: a sweep over it compiles once.
    skip: the first stride is `B // base**skip` (integer >= 1; default 1). Larger values
      start finer and take fewer steps. Traced.
  """

  name = "dus"
  base: int = 2
  skip: int = 1

  def __post_init__(self):
    check_number("dus", "base", self.base, _whole_number(2),
                 "a whole number >= 2 (2 halves the stride each step, the paper's default)")
    check_number("dus", "skip", self.skip, _whole_number(1),
                 "a whole number >= 1 (the first stride is block_length // base**skip)")

  @property
  def uses_schedule(self) -> bool:
    return False

  def groups(self, block_length: int) -> jax.Array:
    """`[block_length]` the step of the block at which each offset is committed."""
    return dilation_groups(block_length, self.base, self.skip)

  def select_in_block(self, view: StepView, block_length: int) -> jax.Array:
    """`commit [W]`: the eligible positions of the lowest group not yet committed."""
    group = self.groups(block_length)[view.positions % block_length]
    current = jnp.min(jnp.where(view.eligible, group, block_length))
    return view.eligible & (group == current)

  def step(self, ctx: StepContext, state: LoopState) -> LoopState:
    block_length = ctx.config.block_length
    return ctx.select_step(state, lambda view, key: self.select_in_block(view, block_length))

"""The KV cache mode of a generation, as a value: `NoCache()`, `PrefixCache()`, `DualCache()`.

`SamplerConfig.cache` holds one; the names "none", "prefix" and "dual" (command lines, config
files, JSON) become values through `cache_mode`, the one table of names (`CACHE_MODES`). A
mode owns what differs between the three: the window of response positions a step sees (its
length and start), the step's forward over that window, the query positions that forward
costs, and the cached window forwards the refresh runs (`sampling/refresh.py`). The loop's
`StepContext` and the refresh call these methods; nothing in `sampling/` compares names.

  * `NoCache`: every step forwards the whole sequence, with the LM head over the response.
  * `PrefixCache`: Fast-dLLM's prefix cache. Each block starts with a full forward that stores
    every layer's keys/values; a step forwards `x[block_start:]` against the cached prompt and
    finished blocks (`prefix_window` groups the blocks into a few static query lengths).
  * `DualCache`: Fast-dLLM's dual cache. A step forwards only the current block against the
    cached prefix and suffix.

A mode has no numbers: it is static, part of the compiled program's key, and equal to any
other value of its class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp

from lookum_jax.model.llada import KVCache
from lookum_jax.sampling.prefix_window import prefix_windows

if TYPE_CHECKING:
  from lookum_jax.sampling.config import SamplerConfig
  from lookum_jax.sampling.types import LoopState, StepContext

M = TypeVar("M", bound="Mode")


class Mode:
  """A named static value of the config (a cache mode, a block start): no numbers, so it is
  hashable and equal to every value of its class, and `jax.jit` keys the program on it.
  `name` is its form on command lines and in JSON."""

  __slots__ = ()
  name: ClassVar[str] = ""

  def __eq__(self, other: object) -> bool:
    if isinstance(other, str):  # code written when modes were names: fail loudly, not False
      raise TypeError(f"{self!r} is a value, not the name {other!r}: compare its `.name`, or "
                      f"the value itself (`== {type(self).__name__}()`).")
    return type(self) is type(other)

  def __hash__(self) -> int:
    return hash(type(self))

  def __repr__(self) -> str:
    return f"{type(self).__name__}()"


def by_name(table: Mapping[str, type[M]], value: str | M, base: type[M], what: str) -> M:
  """`value` itself when it is a `base` value, else the value `table` names.

  Raises:
    ValueError: `"{what} must be one of (names...), got ..."` for anything else.
  """
  if isinstance(value, base):
    return value
  mode = table.get(value) if isinstance(value, str) else None
  if mode is None:
    raise ValueError(f"{what} must be one of {tuple(table)}, got {value!r}.")
  return mode()


def extend_window(ctx: StepContext, tokens: jax.Array, start: Any, cache: KVCache,
                  offset: Any, length: int, fresh_from: Any = None
                  ) -> tuple[jax.Array, KVCache]:
  """`model.extend` of one window per row `tokens [B, w]` at canvas position `start` with its
  fresh keys/values: logits `[B, length, V]` of window positions `[offset, offset + length)`
  (CFG and the EOS option applied) and the window's `KVCache` `[L, R, w, ...]` (R = the
  cache's rows)."""
  forward = ctx.forward
  mask = ctx.attention_mask
  if forward.config.guided:  # the window is in the response: both halves see it
    tokens = jnp.concatenate([tokens, tokens], axis=0)
    mask = None if mask is None else jnp.concatenate([mask, mask], axis=0)
  logits, fresh = forward.model.extend(tokens[:, None], start, cache, mask,
                                       logits_window=(offset, length), fresh_from=fresh_from,
                                       return_kv=True)
  fresh = KVCache(k=fresh.k[:, :, 0], v=fresh.v[:, :, 0], hidden=fresh.hidden[:, 0])
  return forward._finish(logits)[:, 0], fresh


class CacheMode(Mode):
  """Base of the cache modes. The defaults are the cached modes' window: the current block.

  Class attributes:
    holds_cache: the block-start forward stores every layer's keys/values, which the loop
      carries (`LoopState.cache`) and the step forwards read; a refresh needs one.
  """

  __slots__ = ()
  holds_cache: ClassVar[bool] = True

  def window_length(self, config: SamplerConfig) -> int:
    """Response positions a step's logits (and every `StepView` array) cover."""
    return config.block_length

  def window_start(self, ctx: StepContext, state: LoopState) -> jax.Array | int:
    """Response index of the window's first position."""
    return ctx.block_start(state)

  def forward_window(self, ctx: StepContext, state: LoopState, window_tokens: jax.Array
                     ) -> jax.Array:
    """The step forward: logits `[B, K, W, V]` of K canvases that differ from `state.tokens`
    only over the window (`window_tokens [B, K, W]`)."""
    raise NotImplementedError(f"{type(self).__name__} defines no step forward.")

  def step_tokens(self, ctx: StepContext, state: LoopState) -> int | jax.Array:
    """Query positions a (non-refresh) step forward processes per canvas in the block."""
    raise NotImplementedError(f"{type(self).__name__} defines no step forward.")

  def fresh_window(self, ctx: StepContext, state: LoopState
                   ) -> tuple[jax.Array, KVCache, Any, Any]:
    """The step forward of the canvas's window against the cache, with its fresh keys/values
    (the adaptive refresh measures their drift): `(logits, fresh, the canvas position where
    `fresh` starts, the first position computed fresh)`."""
    raise NotImplementedError(f"{type(self).__name__} holds no KV cache to refresh.")

  def fresh_tokens(self, ctx: StepContext, state: LoopState) -> int | jax.Array:
    """Query positions `fresh_window` processes per canvas."""
    return self.step_tokens(ctx, state)

  def vicinity_window(self, ctx: StepContext, state: LoopState, lo: jax.Array
                      ) -> tuple[jax.Array, KVCache]:
    """The vicinity block start's forward (`refresh.VicinityStart`): the window's logits from
    a forward of the canvas from position `lo` (the finished block's start) on, against the
    cache, whose keys/values from `lo` on it replaces."""
    raise NotImplementedError(f"{type(self).__name__} holds no KV cache to refresh.")

  def vicinity_tokens(self, config: SamplerConfig) -> int:
    """Query positions `vicinity_window` processes per canvas."""
    raise NotImplementedError(f"{type(self).__name__} holds no KV cache to refresh.")


class NoCache(CacheMode):
  """No KV cache: every step forwards the whole sequence; the window is the whole response."""

  __slots__ = ()
  name = "none"
  holds_cache = False

  def window_length(self, config: SamplerConfig) -> int:
    return config.gen_length

  def window_start(self, ctx: StepContext, state: LoopState) -> int:
    return 0

  def forward_window(self, ctx: StepContext, state: LoopState, window_tokens: jax.Array
                     ) -> jax.Array:
    batch, paths, w = window_tokens.shape
    start = ctx.prompt_length + self.window_start(ctx, state)
    canvases = jax.lax.dynamic_update_slice_in_dim(
        jnp.repeat(state.tokens[:, None], paths, axis=1), window_tokens, start, axis=2)
    mask = (None if ctx.attention_mask is None
            else jnp.repeat(ctx.attention_mask, paths, axis=0))
    logits, _ = ctx.forward.full(canvases.reshape(batch * paths, -1), mask, start, w)
    return logits.reshape(batch, paths, w, -1)

  def step_tokens(self, ctx: StepContext, state: LoopState) -> int:
    return ctx.prompt_length + ctx.config.gen_length


class PrefixCache(CacheMode):
  """Fast-dLLM's prefix cache: a step recomputes the response from the block start on against
  the cached prompt and finished blocks."""

  __slots__ = ()
  name = "prefix"

  def forward_window(self, ctx: StepContext, state: LoopState, window_tokens: jax.Array
                     ) -> jax.Array:
    """The queries from the block start to the canvas end, fresh, against the cached prompt
    and finished blocks. The query count shrinks block by block; `prefix_windows` groups the
    blocks into a few static window lengths `L` (the canvas tail `[T - L, T)`), chosen per
    block by `lax.switch`. Window positions before the block start (when a block shares a
    longer length) attend through their cached keys/values and their outputs are dropped."""
    cfg, p = ctx.config, ctx.prompt_length
    batch, paths, w = window_tokens.shape
    windows = prefix_windows(cfg.gen_length, cfg.block_length)
    block_start = ctx.block_start(state)

    def shape(i: int) -> Callable[[jax.Array], jax.Array]:
      first = cfg.gen_length - windows.lengths[i]  # response index of the window's start

      def run(window_tokens: jax.Array) -> jax.Array:
        response = jnp.broadcast_to(state.tokens[:, None, p + first:],
                                    (batch, paths, windows.lengths[i]))
        response = jax.lax.dynamic_update_slice_in_dim(response, window_tokens,
                                                       block_start - first, axis=2)
        return ctx.forward.window(response, p + first, state.cache, ctx.attention_mask, w,
                                  fresh_from=p + block_start, offset=block_start - first,
                                  cache_keys=p + windows.cached_response[i])
      return run

    if len(windows.lengths) == 1:
      return shape(0)(window_tokens)
    block = ctx.block_of(state)
    if isinstance(block, int):  # the eager reference: the block is known
      return shape(windows.shape_of[block])(window_tokens)
    index = jnp.asarray(windows.shape_of, jnp.int32)[block]
    return jax.lax.switch(index, [shape(i) for i in range(len(windows.lengths))], window_tokens)

  def step_tokens(self, ctx: StepContext, state: LoopState) -> int | jax.Array:
    """The block's window length: from the block start, or a little before it."""
    cfg = ctx.config
    lengths = prefix_windows(cfg.gen_length, cfg.block_length).length_of
    block = ctx.block_of(state)
    return lengths[block] if isinstance(block, int) else jnp.asarray(lengths, jnp.int32)[block]

  def fresh_window(self, ctx: StepContext, state: LoopState
                   ) -> tuple[jax.Array, KVCache, Any, Any]:
    p = ctx.prompt_length
    start = p + self.window_start(ctx, state)
    logits, fresh = extend_window(ctx, state.tokens[:, p:], p, state.cache,
                                  self.window_start(ctx, state), ctx.window_length,
                                  fresh_from=start)
    return logits, fresh, p, start

  def fresh_tokens(self, ctx: StepContext, state: LoopState) -> int:
    """The whole response (not the shrunk window of `forward_window`)."""
    return ctx.config.gen_length

  def vicinity_window(self, ctx: StepContext, state: LoopState, lo: jax.Array
                      ) -> tuple[jax.Array, KVCache]:
    """The response from `lo` on (the response is forwarded, the keys/values kept from `lo`)."""
    cfg, p = ctx.config, ctx.prompt_length
    logits, fresh = extend_window(ctx, state.tokens[:, p:], p, state.cache,
                                  self.window_start(ctx, state), ctx.window_length,
                                  fresh_from=lo)
    keep = p + jnp.arange(cfg.gen_length) >= lo
    return logits, state.cache.write(p, fresh.k, fresh.v, fresh.hidden, keep)

  def vicinity_tokens(self, config: SamplerConfig) -> int:
    return config.gen_length


class DualCache(CacheMode):
  """Fast-dLLM's dual cache: a step forwards only the current block against the cached prefix
  and suffix."""

  __slots__ = ()
  name = "dual"

  def forward_window(self, ctx: StepContext, state: LoopState, window_tokens: jax.Array
                     ) -> jax.Array:
    start = ctx.prompt_length + self.window_start(ctx, state)
    return ctx.forward.window(window_tokens, start, state.cache, ctx.attention_mask,
                              window_tokens.shape[2])

  def step_tokens(self, ctx: StepContext, state: LoopState) -> int:
    return ctx.config.block_length

  def fresh_window(self, ctx: StepContext, state: LoopState
                   ) -> tuple[jax.Array, KVCache, Any, Any]:
    start = ctx.prompt_length + self.window_start(ctx, state)
    logits, fresh = extend_window(ctx, ctx.canvas_window(state), start, state.cache, 0,
                                  ctx.window_length)
    return logits, fresh, start, start

  def vicinity_window(self, ctx: StepContext, state: LoopState, lo: jax.Array
                      ) -> tuple[jax.Array, KVCache]:
    """The finished block and this one (`2 x block_length` positions from `lo`)."""
    p, bl = ctx.prompt_length, ctx.config.block_length
    window = jax.lax.dynamic_slice_in_dim(state.tokens, lo, 2 * bl, axis=1)
    logits, fresh = extend_window(ctx, window, lo, state.cache,
                                  p + ctx.block_start(state) - lo, bl)
    return logits, state.cache.write(lo, fresh.k, fresh.v, fresh.hidden)

  def vicinity_tokens(self, config: SamplerConfig) -> int:
    return 2 * config.block_length


# The one table of cache names (command lines, config files, JSON).
CACHE_MODES: dict[str, type[CacheMode]] = {
    "none": NoCache, "prefix": PrefixCache, "dual": DualCache}


def cache_mode(value: str | CacheMode) -> CacheMode:
  """The cache mode a name in `CACHE_MODES` (or a `CacheMode` value, returned as is) gives."""
  return by_name(CACHE_MODES, value, CacheMode, "SamplerConfig.cache")

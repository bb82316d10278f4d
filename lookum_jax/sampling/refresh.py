"""When and how far the KV cache is refreshed: the adaptive (drift-triggered) refresh and the
vicinity block start.

Fast-dLLM's caches (`SamplerConfig.cache`) are rebuilt by a full forward at each block start
and, with `cache_refresh=n`, every n steps. Between refreshes the cache goes stale: the keys
and values of every cached position were computed against the window's *old* tokens.

Both choices are values. The refresh schedule, `SamplerConfig.refresh_schedule`, is derived
from `cache_refresh` (an int period gives `PeriodicRefresh(n)`, "adaptive" `AdaptiveRefresh()`,
through `REFRESH_MODES`) and owns the step's forward (`StepContext.refresh_logits`) and what
runs after a step; the block start, `SamplerConfig.block_start`, is `FullStart()` or
`VicinityStart()` (`BLOCK_STARTS`) and owns the block's first forward. What differs between
the prefix and the dual cache in these forwards is the cache mode's (`sampling/cache.py`).

Adaptive refresh (`cache_refresh="adaptive"`)
---------------------------------------------
Elastic-Cache (Nguyen-Tri, Ranjan, Shen 2025, "Attention Is All You Need for KV Cache in
Diffusion LLMs", arXiv 2510.14973) decides *when* to refresh by an attention-aware drift test
on the most-attended token and *where* by recomputing from a chosen layer on; d2Cache and
dLLM-Cache likewise refresh what moved instead of on a fixed period. (We read the paper's
abstract and project page, not its code; the signal below is ours.) It is one that the
step's own forward already holds, so measuring it costs no extra forward:

    drift = max over layers l >= refresh_from_layer of
            ||(K_l, V_l)_fresh - (K_l, V_l)_cached|| / ||(K_l, V_l)_cached||

over the window's freshly computed positions (dual cache: the block; prefix cache: the block
and everything after it), where "cached" is what the cache holds for those positions, as of
its last refresh. Why this measures the staleness of the rest: between two refreshes the only
tokens that change are the window's (commits happen in the current block), so every cached
position outside the window is stale exactly because it attended to the window's old keys and
values; to first order its error is its attention to the window times this change, and the
window's logits read those cached entries. (Elastic-Cache watches attention weights; with the
cached keys fixed between refreshes, the window's attention over them also changes only
through the window's own change. Keys and values need no attention weights out of the fused
attention kernel.) Elastic-Cache observes that deeper layers drift more, hence
`refresh_from_layer`; on toy-sudoku, measuring only the deeper half was worse at equal cost
(experiments/README.md).

Per row: after a step's forward, a row whose drift exceeds `refresh_threshold` gets a full
forward at once (its logits and cache replaced), charged to that row only: one more NFE and
every position as forward tokens, on top of the window forward that measured the drift. The
batch computes one full forward when any row is due and keeps it only for due rows, so a
row's schedule depends on its own canvas and key only. A strategy whose step does not go
through `StepContext.refresh_logits` (LookUM's branching steps keep the chosen look-ahead's
logits) is measured by a probe: a window forward of the chosen canvas, charged as one.

Vicinity block start (`block_start="vicinity"`)
----------------------------------------------
dInfer refreshes only the neighbourhood of the block instead of the whole sequence. Each
block after the first starts with a window forward over the block just finished and the new
one against the cache (prefix cache: the response from the finished block on), whose keys
and values are written into the cache; the prompt and the later blocks keep theirs. It costs
2 x block tokens instead of the whole sequence.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp

from lookum_jax.model.llada import KVCache
from lookum_jax.sampling.cache import Mode, by_name

if TYPE_CHECKING:
  from lookum_jax.sampling.config import SamplerConfig
  from lookum_jax.sampling.types import LoopState, StepContext

UNMEASURED = -1.0  # `KVCache.drift` of a row whose drift this step has not measured yet


# ---------------------------------------------------------------------- forwards

def _rows(mask: jax.Array, rows: int) -> jax.Array:
  """A per-row `[B]` mask over the cache's rows (`2B` under classifier-free guidance, whose
  unconditional copies follow the conditional rows)."""
  return jnp.tile(mask, rows // mask.shape[0])


def unmeasured(cache: KVCache) -> KVCache:
  """`cache` with every row's drift marked unmeasured (it was just built)."""
  return cache.replace(drift=jnp.full((1, cache.k.shape[1]), UNMEASURED, jnp.float32))


def full_forward(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache | None]:
  """The window's logits and (with a cache) every position's keys/values, as the refresh
  schedule stores them (`Refresh.fresh`)."""
  cfg = ctx.config
  logits, cache = ctx.forward.full(
      state.tokens, ctx.attention_mask, ctx.prompt_length + ctx.window_start(state),
      ctx.window_length, with_cache=cfg.cache.holds_cache)
  if cache is not None:
    cache = cfg.refresh_schedule.fresh(cache)
  return logits, cache


def measure_drift(ctx: StepContext, cache: KVCache, fresh: KVCache, start, fresh_from
                  ) -> jax.Array:
  """`[B]` the drift of each row's window: the relative change of its fresh keys/values
  (positions from `fresh_from` on) against the cache's, worst layer from `refresh_from_layer`,
  worst of the CFG halves."""
  first, layers = ctx.config.refresh_from_layer, fresh.k.shape[0]
  if first >= layers:  # raised while tracing, before any work
    raise ValueError(f"SamplerConfig.refresh_from_layer ({first}) must be below the model's "
                     f"{layers} layers; e.g. refresh_from_layer={layers - 1}.")
  w = fresh.k.shape[2]
  valid = (start + jnp.arange(w) >= fresh_from).astype(jnp.float32)  # [w]

  def sums(new, old):  # [L, R, w, kv, hd] -> ([L, R], [L, R])
    old = jax.lax.dynamic_slice_in_dim(old, start, w, axis=2)[first:].astype(jnp.float32)
    new = new[first:].astype(jnp.float32)
    weight = valid[None, None, :, None, None]
    return (jnp.sum(weight * (new - old) ** 2, axis=(2, 3, 4)),
            jnp.sum(weight * old ** 2, axis=(2, 3, 4)))

  dk, nk = sums(fresh.k, cache.k)
  dv, nv = sums(fresh.v, cache.v)
  drift = jnp.max(jnp.sqrt((dk + dv) / jnp.maximum(nk + nv, 1e-30)), axis=0)  # [R]
  return jnp.max(drift.reshape(ctx.forward.cost, -1), axis=0)


# ---------------------------------------------------------------------- refresh schedules

@dataclasses.dataclass(frozen=True)
class Refresh:
  """When the cache is refreshed inside a block: a static value the config derives from
  `cache_refresh` (`SamplerConfig.refresh_schedule`). It owns the step's forward
  (`StepContext.refresh_logits`) and what runs after a strategy's step.

  Class attributes:
    measures_drift: the schedule measures the cache's drift (reads `refresh_from_layer`).
  """

  measures_drift: ClassVar[bool] = False

  def step_forward(self, ctx: StepContext, state: LoopState) -> LoopState:
    """The forward for the canvas after a commit (`StepContext.refresh_logits`)."""
    raise NotImplementedError

  def after_step(self, ctx: StepContext, state: LoopState) -> LoopState:
    """What runs after a strategy's step (default: nothing)."""
    del ctx
    return state

  def fresh(self, cache: KVCache) -> KVCache:
    """A cache a full or vicinity forward just built, as the schedule keeps it."""
    return cache


@dataclasses.dataclass(frozen=True)
class PeriodicRefresh(Refresh):
  """A full forward every `period` steps inside a block (0: at block starts only, Fast-dLLM)."""

  period: int = 0

  def step_forward(self, ctx: StepContext, state: LoopState) -> LoopState:
    """The window against the cache, or a full refresh when one is due; nothing when no row
    is still in its block. The state keeps its `window_stats`."""
    active = ctx.active(state)

    def step_forward(state):
      return ctx._forward_window(state, ctx.canvas_window(state)[:, None])[:, 0], state.cache

    refreshing = self.period > 0  # the config allows a period only with a cache
    due = refreshing & ((state.block_step + 1) % max(self.period, 1) == 0)  # next step

    def run(state):
      if not refreshing:
        return step_forward(state)
      return jax.lax.cond(due, ctx._full_forward, step_forward, state)

    def run_window(state):
      logits, cache = run(state)
      return ctx.window_stats(state, logits), cache

    window, cache = jax.lax.cond(jnp.any(active), run_window, lambda s: (s.window, s.cache),
                                 state)
    tokens = jnp.where(due, state.tokens.shape[1], ctx.step_tokens(state))
    return ctx.charge(state.replace(window=window, cache=cache), active, tokens)


@dataclasses.dataclass(frozen=True)
class AdaptiveRefresh(Refresh):
  """A row's cache is refreshed when its drift passes `SamplerConfig.refresh_threshold`
  (measured on layers from `refresh_from_layer` on; the module's docstring)."""

  measures_drift: ClassVar[bool] = True

  def step_forward(self, ctx: StepContext, state: LoopState) -> LoopState:
    """The window forward for the canvas after a commit, its drift stored in the cache for
    `after_step` (which refreshes due rows)."""
    active = ctx.active(state)
    rows = state.cache.k.shape[1]
    mode = ctx.config.cache

    def run(state):
      logits, fresh, start, fresh_from = mode.fresh_window(ctx, state)
      drift = measure_drift(ctx, state.cache, fresh, start, fresh_from)
      return ctx.window_stats(state, logits), drift

    def idle(state):
      return state.window, jnp.full(active.shape, UNMEASURED, jnp.float32)

    window, drift = jax.lax.cond(jnp.any(active), run, idle, state)
    drift = jnp.where(active, drift, UNMEASURED)
    cache = state.cache.replace(drift=_rows(drift, rows)[None])
    return ctx.charge(state.replace(window=window, cache=cache), active,
                      mode.fresh_tokens(ctx, state))

  def after_step(self, ctx: StepContext, state: LoopState) -> LoopState:
    """Measures the rows the step's forward did not measure (a probe window forward,
    charged), then gives every row still in its block whose drift passes the threshold a
    full forward, its logits and cache replaced."""
    cfg = ctx.config
    mode = cfg.cache
    active = ctx.active(state)
    rows = state.cache.k.shape[1]
    batch = active.shape[0]
    drift = state.cache.drift[0, :batch]
    probe = active & (drift < 0)

    def measure(state):
      _, fresh, start, fresh_from = mode.fresh_window(ctx, state)
      return measure_drift(ctx, state.cache, fresh, start, fresh_from)

    probed = jax.lax.cond(jnp.any(probe), measure, lambda s: drift, state)
    drift = jnp.where(probe, probed, drift)
    state = ctx.charge(state, probe, mode.fresh_tokens(ctx, state))
    due = active & (drift > cfg.refresh_threshold)

    def refresh(state):
      logits, cache = full_forward(ctx, state)
      keep = _rows(due, rows)
      cache = jax.tree.map(
          lambda new, old: jnp.where(keep.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old),
          cache, state.cache)
      window = jax.tree.map(
          lambda new, old: jnp.where(due.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
          ctx.window_stats(state, logits), state.window)
      return window, cache

    window, cache = jax.lax.cond(jnp.any(due), refresh, lambda s: (s.window, s.cache), state)
    cache = unmeasured(cache)
    state = ctx.charge(state.replace(window=window, cache=cache), due,
                       state.tokens.shape[1])
    return state

  def fresh(self, cache: KVCache) -> KVCache:
    return unmeasured(cache)


# `cache_refresh` names besides a period.
REFRESH_MODES: dict[str, type[Refresh]] = {"adaptive": AdaptiveRefresh}


def refresh_schedule(cache_refresh: int | str) -> Refresh:
  """The schedule `SamplerConfig.cache_refresh` describes: an int period, or a name in
  `REFRESH_MODES`."""
  if isinstance(cache_refresh, str):
    return by_name(REFRESH_MODES, cache_refresh, Refresh, "SamplerConfig.cache_refresh")
  return PeriodicRefresh(cache_refresh)


# ---------------------------------------------------------------------- block starts

class BlockStart(Mode):
  """How a block starts (`SamplerConfig.block_start`): its first forward, which serves the
  block's first step and (with a cache) rebuilds the cache.

  Class attributes:
    needs_cache: the start only makes sense with a KV cache to refresh.
  """

  __slots__ = ()
  needs_cache: ClassVar[bool] = False

  def start_block(self, ctx: StepContext, state: LoopState
                  ) -> tuple[jax.Array, KVCache | None, Any]:
    """The block-start forward: `(logits, cache, query positions per row)`."""
    raise NotImplementedError


class FullStart(BlockStart):
  """Each block starts with a full forward (Fast-dLLM)."""

  __slots__ = ()
  name = "full"

  def start_block(self, ctx: StepContext, state: LoopState
                  ) -> tuple[jax.Array, KVCache | None, Any]:
    logits, cache = full_forward(ctx, state)
    return logits, cache, state.tokens.shape[1]


class VicinityStart(BlockStart):
  """Blocks after the first recompute only the block just finished and this one against the
  cached rest (dInfer-style; with the prefix cache, the response from the finished block on)."""

  __slots__ = ()
  name = "vicinity"
  needs_cache = True

  def start_block(self, ctx: StepContext, state: LoopState
                  ) -> tuple[jax.Array, KVCache | None, Any]:
    cfg = ctx.config
    if cfg.num_blocks == 1:
      return FullStart().start_block(ctx, state)
    total = state.tokens.shape[1]
    block = ctx.block_of(state)
    logits, cache = jax.lax.cond(block == 0, lambda s: full_forward(ctx, s),
                                 lambda s: vicinity_forward(ctx, s), state)
    width = cfg.cache.vicinity_tokens(cfg)
    return logits, cache, jnp.where(block == 0, total, width)


def vicinity_forward(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache]:
  """The block's logits from a window over the block just finished and this one (prefix
  cache: the response from the finished block on) against the cache, whose keys/values at
  those positions it replaces (`CacheMode.vicinity_window`)."""
  lo = ctx.prompt_length + jnp.maximum(ctx.block_start(state) - ctx.config.block_length, 0)
  logits, cache = ctx.config.cache.vicinity_window(ctx, state, lo)
  return logits, ctx.config.refresh_schedule.fresh(cache)


# The one table of block-start names.
BLOCK_STARTS: dict[str, type[BlockStart]] = {"full": FullStart, "vicinity": VicinityStart}


def block_start_mode(value: str | BlockStart) -> BlockStart:
  """The block start a name in `BLOCK_STARTS` (or a `BlockStart` value) gives."""
  return by_name(BLOCK_STARTS, value, BlockStart, "SamplerConfig.block_start")


# ---------------------------------------------------------------------- config checks

def check_refresh(config: SamplerConfig) -> None:
  """Raises `ValueError` naming the fix for a bad refresh setting of `config` (whose cache
  and block start are values)."""
  refresh = config.cache_refresh
  if isinstance(refresh, str):
    if refresh not in REFRESH_MODES:
      raise ValueError(f"SamplerConfig.cache_refresh must be an int >= 0 or 'adaptive', got "
                       f"{refresh!r}.")
  elif not isinstance(refresh, int) or isinstance(refresh, bool) or refresh < 0:
    raise ValueError(f"SamplerConfig.cache_refresh must be an int >= 0 or 'adaptive', got "
                     f"{refresh!r}.")
  if refresh and not config.cache.holds_cache:
    raise ValueError("SamplerConfig.cache_refresh needs a cache; set cache='prefix' or "
                     "'dual', or cache_refresh=0.")
  threshold = config.refresh_threshold
  if isinstance(threshold, bool) or not (
      isinstance(threshold, (numbers.Number, jax.Array)) or hasattr(threshold, "dtype")):
    raise ValueError(f"SamplerConfig.refresh_threshold must be a number >= 0, got "
                     f"{threshold!r}.")
  if isinstance(threshold, numbers.Number) and not threshold >= 0:
    raise ValueError(f"SamplerConfig.refresh_threshold must be >= 0 (0 refreshes after every "
                     f"step that changed the window), got {threshold!r}.")
  layer = config.refresh_from_layer
  if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
    raise ValueError(f"SamplerConfig.refresh_from_layer must be an int >= 0, got {layer!r}.")
  if layer and not refresh_schedule(refresh).measures_drift:
    raise ValueError("SamplerConfig.refresh_from_layer applies to the adaptive refresh only; "
                     "set cache_refresh='adaptive', or refresh_from_layer=0.")
  if config.block_start.needs_cache and not config.cache.holds_cache:
    raise ValueError("SamplerConfig.block_start='vicinity' refreshes a cache; set "
                     "cache='prefix' or 'dual', or block_start='full'.")

"""When and how far the KV cache is refreshed: the adaptive (drift-triggered) refresh and the
vicinity block start.

Fast-dLLM's caches (`SamplerConfig.cache`) are rebuilt by a full forward at each block start
and, with `cache_refresh=n`, every n steps. Between refreshes the cache goes stale: the keys
and values of every cached position were computed against the window's *old* tokens.

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

import numbers
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from lookum_jax.model.llada import KVCache

if TYPE_CHECKING:
  from lookum_jax.sampling.config import SamplerConfig
  from lookum_jax.sampling.types import LoopState, StepContext

BLOCK_STARTS = ("full", "vicinity")
REFRESH_MODES = ("adaptive",)  # `cache_refresh` values besides a period
UNMEASURED = -1.0  # `KVCache.drift` of a row whose drift this step has not measured yet


# ---------------------------------------------------------------------- config checks

def check_refresh(config: SamplerConfig) -> None:
  """Raises `ValueError` naming the fix for a bad refresh setting of `config`."""
  refresh = config.cache_refresh
  if isinstance(refresh, str):
    if refresh not in REFRESH_MODES:
      raise ValueError(f"SamplerConfig.cache_refresh must be an int >= 0 or 'adaptive', got "
                       f"{refresh!r}.")
  elif not isinstance(refresh, int) or isinstance(refresh, bool) or refresh < 0:
    raise ValueError(f"SamplerConfig.cache_refresh must be an int >= 0 or 'adaptive', got "
                     f"{refresh!r}.")
  if refresh and config.cache == "none":
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
  if refresh != "adaptive" and layer:
    raise ValueError("SamplerConfig.refresh_from_layer applies to the adaptive refresh only; "
                     "set cache_refresh='adaptive', or refresh_from_layer=0.")
  if config.block_start not in BLOCK_STARTS:
    raise ValueError(f"SamplerConfig.block_start must be one of {BLOCK_STARTS}, got "
                     f"{config.block_start!r}.")
  if config.block_start == "vicinity" and config.cache == "none":
    raise ValueError("SamplerConfig.block_start='vicinity' refreshes a cache; set "
                     "cache='prefix' or 'dual', or block_start='full'.")


# ---------------------------------------------------------------------- forwards

def _rows(mask: jax.Array, rows: int) -> jax.Array:
  """A per-row `[B]` mask over the cache's rows (`2B` under classifier-free guidance, whose
  unconditional copies follow the conditional rows)."""
  return jnp.tile(mask, rows // mask.shape[0])


def full_forward(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache | None]:
  """The window's logits and (with a cache) every position's keys/values, the cache's drift
  marked unmeasured (adaptive refresh)."""
  cfg = ctx.config
  logits, cache = ctx.forward.full(
      state.tokens, ctx.attention_mask, ctx.prompt_length + ctx.window_start(state),
      ctx.window_length, with_cache=cfg.cache != "none")
  if cache is not None and cfg.adaptive_refresh:
    cache = cache.replace(drift=jnp.full((1, cache.k.shape[1]), UNMEASURED, jnp.float32))
  return logits, cache


def _extend(ctx: StepContext, tokens: jax.Array, start, cache: KVCache, offset, length: int,
            fresh_from=None) -> tuple[jax.Array, KVCache]:
  """`model.extend` of one window per row `tokens [B, w]` with its fresh keys/values: logits
  `[B, length, V]` (CFG and the EOS option applied) and the window's `KVCache` `[L, R, w, ...]`
  (R = the cache's rows)."""
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


def window_forward(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache, Any, Any]:
  """The step forward of the canvas's window against the cache (as `_forward_window` with one
  candidate), also returning the fresh keys/values, the canvas position where they start and
  the first fresh one."""
  cfg, p = ctx.config, ctx.prompt_length
  start = p + ctx.window_start(state)
  if cfg.cache == "prefix":
    logits, fresh = _extend(ctx, state.tokens[:, p:], p, state.cache, ctx.window_start(state),
                            ctx.window_length, fresh_from=start)
    return logits, fresh, p, start
  logits, fresh = _extend(ctx, ctx.canvas_window(state), start, state.cache, 0,
                          ctx.window_length)
  return logits, fresh, start, start


def _window_tokens(ctx: StepContext, state: LoopState) -> Any:
  """Query positions `window_forward` processes: the whole response under the prefix cache
  (not the shrunk window of `StepContext._prefix_window`), else a step forward's."""
  return ctx.config.gen_length if ctx.config.cache == "prefix" else ctx.step_tokens(state)


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


# ---------------------------------------------------------------------- the step's forward

def step_forward(ctx: StepContext, state: LoopState) -> LoopState:
  """The adaptive refresh's `refresh_logits`: the window forward for the canvas after a
  commit, its drift stored in the cache for `after_step` (which refreshes due rows)."""
  active = ctx.active(state)
  rows = state.cache.k.shape[1]

  def run(state):
    logits, fresh, start, fresh_from = window_forward(ctx, state)
    drift = measure_drift(ctx, state.cache, fresh, start, fresh_from)
    return ctx.window_stats(state, logits), drift

  def idle(state):
    return state.window, jnp.full(active.shape, UNMEASURED, jnp.float32)

  window, drift = jax.lax.cond(jnp.any(active), run, idle, state)
  drift = jnp.where(active, drift, UNMEASURED)
  cache = state.cache.replace(drift=_rows(drift, rows)[None])
  return ctx.charge(state.replace(window=window, cache=cache), active,
                    _window_tokens(ctx, state))


def after_step(ctx: StepContext, state: LoopState) -> LoopState:
  """After a strategy's step (adaptive refresh only): measure the rows the step's forward
  did not measure (a probe window forward, charged), then give every row still in its block
  whose drift passes the threshold a full forward, its logits and cache replaced."""
  cfg = ctx.config
  if not cfg.adaptive_refresh:
    return state
  active = ctx.active(state)
  rows = state.cache.k.shape[1]
  batch = active.shape[0]
  drift = state.cache.drift[0, :batch]
  probe = active & (drift < 0)

  def measure(state):
    _, fresh, start, fresh_from = window_forward(ctx, state)
    return measure_drift(ctx, state.cache, fresh, start, fresh_from)

  probed = jax.lax.cond(jnp.any(probe), measure, lambda s: drift, state)
  drift = jnp.where(probe, probed, drift)
  state = ctx.charge(state, probe, _window_tokens(ctx, state))
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
  cache = cache.replace(drift=jnp.full((1, rows), UNMEASURED, jnp.float32))
  state = ctx.charge(state.replace(window=window, cache=cache), due,
                     state.tokens.shape[1])
  return state


# ---------------------------------------------------------------------- block starts

def start_block(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache | None, Any]:
  """The block-start forward: `(logits, cache, query positions per row)`. A full forward, or
  with `block_start="vicinity"` after the first block, the vicinity window's."""
  cfg = ctx.config
  total = state.tokens.shape[1]
  if cfg.block_start == "full" or cfg.num_blocks == 1:
    logits, cache = full_forward(ctx, state)
    return logits, cache, total

  def vicinity(state):
    logits, cache = vicinity_forward(ctx, state)
    return logits, cache

  block = ctx.block_of(state)
  logits, cache = jax.lax.cond(block == 0, lambda s: full_forward(ctx, s), vicinity, state)
  width = 2 * cfg.block_length if cfg.cache == "dual" else cfg.gen_length
  return logits, cache, jnp.where(block == 0, total, width)


def vicinity_forward(ctx: StepContext, state: LoopState) -> tuple[jax.Array, KVCache]:
  """The block's logits from a window over the block just finished and this one (prefix
  cache: the response from the finished block on) against the cache, whose keys/values at
  those positions it replaces."""
  cfg, p = ctx.config, ctx.prompt_length
  bl = cfg.block_length
  lo = p + jnp.maximum(ctx.block_start(state) - bl, 0)
  cache = state.cache
  if cfg.cache == "prefix":
    logits, fresh = _extend(ctx, state.tokens[:, p:], p, cache, ctx.window_start(state),
                            ctx.window_length, fresh_from=lo)
    keep = p + jnp.arange(cfg.gen_length) >= lo
    cache = cache.write(p, fresh.k, fresh.v, fresh.hidden, keep)
  else:
    window = jax.lax.dynamic_slice_in_dim(state.tokens, lo, 2 * bl, axis=1)
    logits, fresh = _extend(ctx, window, lo, cache, p + ctx.block_start(state) - lo, bl)
    cache = cache.write(lo, fresh.k, fresh.v, fresh.hidden)
  if cfg.adaptive_refresh:
    cache = cache.replace(drift=jnp.full_like(cache.drift, UNMEASURED))
  return logits, cache

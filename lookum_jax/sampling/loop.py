"""The unmasking loop: a whole generation as one XLA program.

`generate` splits the NNX model into a static graph definition and traced weights, then runs
`decode` under `jax.jit`. Blocks are decoded left to right (`lax.fori_loop`); inside a block a
`lax.while_loop` runs denoising steps until every row has committed the block. A row that
finishes its block early is frozen (it spends no forward and draws no randomness) until the
others catch up, so its tokens and NFE do not depend on its batch.

Each block starts with one full forward. Its logits serve the block's first step and, under
a KV cache (`SamplerConfig.cache`), it stores every layer's keys and values. Every later step
selects positions from the carried logits, commits them and runs the forward for the new
canvas:

  * cache "none": the whole sequence, with the LM head over the response only;
  * cache "prefix": the response against the cached prompt and finished blocks, whose keys
    and values stay cached while the block and everything after it is recomputed
    (Fast-dLLM's prefix cache; we forward the whole response to keep one static shape, so
    the finished blocks' queries are computed and dropped);
  * cache "dual": the block only, against the cached prefix and suffix (Fast-dLLM).

The carried logits, and every per-position array a strategy sees (`StepView`), cover a
*window* of response positions: the whole response without a cache, the current block with
one. Prompt positions are never in it, so nothing is computed or drawn for them. A strategy
such as LookUM that already ran the model on the chosen canvas hands those logits back
instead, so its look-ahead forward doubles as the next step's forward.

Randomness: a row's key is folded with its own step count each step (noise and strategy keys)
and per-position draws with the response position, so a row's samples depend only on its key
and config.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from lookum_jax.model.llada import KVCache
from lookum_jax.sampling import scores
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.strategies import StepView

ForwardFn = Callable[[jax.Array, jax.Array | None], jax.Array]


@struct.dataclass
class LoopState:
  """Carried through the loop. B rows, G = gen_length, W = window, T = prompt + G."""

  tokens: jax.Array  # [B, T] int32 canvas
  logits: jax.Array  # [B, W, V] float32, model output over the window for `tokens`
  masked: jax.Array  # [B, G] bool, response positions still to decode
  unmask_order: jax.Array  # [B, G] int32, step at which committed; -1 uncommitted
  step_in_block: jax.Array  # [B] int32
  num_steps: jax.Array  # [B] int32, denoising steps taken
  nfe: jax.Array  # [B] int32, forward passes spent
  forward_tokens: jax.Array  # [B] int32, query positions those forwards processed
  row_keys: jax.Array  # [B] PRNG keys
  block: jax.Array  # [] int32, block being decoded (every row is in the same block)
  block_step: jax.Array  # [] int32, loop iterations in this block
  cache: KVCache | None
  strategy_state: Any


@struct.dataclass
class GenerationResult:
  """Output of `generate`.

  Attributes:
    tokens: `[B, P + gen_length]` prompt (as given, padding included) and response.
    nfe: `[B]` model forward passes spent on each sequence (CFG counts two per step;
      LookUM counts its look-ahead passes; a cached window forward counts one).
    num_steps: `[B]` denoising steps taken.
    unmask_order: `[B, P + gen_length]` step at which each position was committed
      (0-based); -1 for prompt positions.
    forward_tokens: `[B]` positions the forwards processed (the whole sequence without a
      cache; the window with one; times candidates for LookUM), a FLOP proxy.
    strategy_state: whatever the strategy carried (e.g. log-probabilities).
  """

  tokens: jax.Array
  nfe: jax.Array
  num_steps: jax.Array
  unmask_order: jax.Array
  forward_tokens: jax.Array | None = None
  strategy_state: Any = None


@dataclasses.dataclass(frozen=True)
class Forward:
  """The model as the loop calls it: CFG and the EOS option applied, windows and caches.

  `model` is an NNX model with `prefill`/`extend` (every cache mode), or any function
  `(tokens [N, T], attention_mask) -> logits [N, T, V]` (cache "none" only).
  """

  model: Any
  config: SamplerConfig
  prompt_length: int
  mask_token_id: int
  eos_token_id: int

  @property
  def cost(self) -> int:
    """Forward passes per canvas (2 with classifier-free guidance)."""
    return 2 if self.config.cfg_scale > 0 else 1

  @property
  def cached(self) -> bool:
    return hasattr(self.model, "prefill")

  def _finish(self, logits: jax.Array) -> jax.Array:
    logits = logits.astype(jnp.float32)
    if self.config.cfg_scale > 0:
      cond, uncond = jnp.split(logits, 2, axis=0)
      logits = uncond + (self.config.cfg_scale + 1.0) * (cond - uncond)
    if self.config.logits_eos_inf:
      logits = logits.at[..., self.eos_token_id].set(-jnp.inf)
    return logits

  def _with_unconditional(self, tokens, attention_mask):
    if self.config.cfg_scale <= 0:
      return tokens, attention_mask
    unconditional = tokens.at[:, :self.prompt_length].set(self.mask_token_id)
    mask = None if attention_mask is None else jnp.concatenate([attention_mask] * 2, axis=0)
    return jnp.concatenate([tokens, unconditional], axis=0), mask

  def full(self, tokens: jax.Array, attention_mask: jax.Array | None, start, length: int,
           with_cache: bool = False) -> tuple[jax.Array, KVCache | None]:
    """Logits `[N, length, V]` of positions `[start, start + length)` of full canvases
    `[N, T]`, and (with_cache) the canvases' KV cache."""
    both, mask = self._with_unconditional(tokens, attention_mask)
    if self.cached:
      logits, cache = self.model.prefill(both, mask, logits_window=(start, length))
      return self._finish(logits), (cache if with_cache else None)
    if with_cache:
      raise ValueError("KV caching needs a model with prefill/extend (an LLaDA), not a plain "
                       "function; use cache='none'.")
    logits = jax.lax.dynamic_slice_in_dim(self.model(both, mask), start, length, axis=1)
    return self._finish(logits), None

  def window(self, tokens: jax.Array, start, cache: KVCache,
             attention_mask: jax.Array | None, length: int, *, fresh_from=None,
             offset=0) -> jax.Array:
    """Logits `[B, K, length, V]` of candidate windows `[B, K, w]` at `start` against
    `cache`, for window positions `[offset, offset + length)` (`LLaDA.extend`)."""
    if self.config.cfg_scale > 0:
      tokens = jnp.concatenate([tokens, tokens], axis=0)  # the window is in the response
      attention_mask = (None if attention_mask is None
                        else jnp.concatenate([attention_mask] * 2, axis=0))
    logits = self.model.extend(tokens, start, cache, attention_mask,
                               logits_window=(offset, length), fresh_from=fresh_from)
    return self._finish(logits)


@dataclasses.dataclass(frozen=True)
class StepContext:
  """Everything a step needs besides the loop state; built once per trace.

  `static_block` is the block index when blocks run in a Python loop (the eager reference),
  else None and the block index is `state.block`.
  """

  config: SamplerConfig
  forward: Forward
  attention_mask: jax.Array | None  # [B, T]
  prompt_length: int
  mask_token_id: int
  stop_token_ids: tuple[int, ...]
  schedule: jax.Array  # [steps_per_block] int32
  policy: Any = None  # the learned policy module, for strategies that read one
  targets: jax.Array | None = None  # [B, G] reference response (oracle controls), or None
  static_block: int | None = None

  # ------------------------------------------------------------------ geometry
  @property
  def window_length(self) -> int:
    return self.config.window_length

  @property
  def forward_cost(self) -> int:
    return self.forward.cost

  def block_of(self, state: LoopState) -> jax.Array | int:
    return state.block if self.static_block is None else self.static_block

  def block_start(self, state: LoopState) -> jax.Array | int:
    """Response index of the current block's first position."""
    return self.block_of(state) * self.config.block_length

  def window_start(self, state: LoopState) -> jax.Array | int:
    """Response index of the window's first position."""
    return 0 if self.config.cache == "none" else self.block_start(state)

  def window_positions(self, state: LoopState) -> jax.Array:
    """`[W]` response index of each window position."""
    return self.window_start(state) + jnp.arange(self.window_length, dtype=jnp.int32)

  def in_block(self, state: LoopState) -> jax.Array:
    """`[W]` window positions inside the current block."""
    pos = self.window_positions(state)
    start = self.block_start(state)
    return (pos >= start) & (pos < start + self.config.block_length)

  def window_of(self, array: jax.Array, state: LoopState, offset: int = 0) -> jax.Array:
    """The window's slice `[B, W, ...]` of a per-position array `[B, offset + G, ...]`."""
    return jax.lax.dynamic_slice_in_dim(array, offset + self.window_start(state),
                                        self.window_length, axis=1)

  def window_masked(self, state: LoopState) -> jax.Array:
    return self.window_of(state.masked, state)

  def eligible(self, state: LoopState) -> jax.Array:
    """`[B, W]` masked positions inside the current block."""
    return self.window_masked(state) & self.in_block(state)[None]

  def active(self, state: LoopState) -> jax.Array:
    """`[B]` rows whose current block still has masked positions."""
    return jnp.any(self.eligible(state), axis=-1)

  # ------------------------------------------------------------------ step parts
  def step_keys(self, state: LoopState) -> tuple[jax.Array, jax.Array]:
    """Per-row keys for this step: (noise key, strategy key), from the row key and the row's
    own step count."""
    keys = jax.vmap(lambda k, n: jax.random.split(jax.random.fold_in(k, n)))(
        state.row_keys, state.num_steps)
    return keys[:, 0], keys[:, 1]

  def view(self, state: LoopState, noise_keys: jax.Array) -> StepView:
    """Candidates and scores of the window from the carried logits (batched `[B, ...]`)."""
    cfg = self.config
    positions = self.window_positions(state)
    candidates = jax.vmap(
        lambda lg, k: scores.gumbel_argmax(lg, cfg.temperature, k, positions,
                                           self.mask_token_id))(state.logits, noise_keys)
    if cfg.confidence_eos_eot_inf:
      demoted = jnp.isin(candidates, jnp.asarray(self.stop_token_ids))
    else:
      demoted = jnp.zeros_like(candidates, dtype=bool)
    index = jnp.minimum(state.step_in_block, self.schedule.shape[0] - 1)
    batch = candidates.shape[0]
    return StepView(
        logits=state.logits, candidates=candidates,
        confidence=scores.token_probability(state.logits, candidates),
        certainty=scores.log_odds(state.logits, candidates),
        eligible=self.eligible(state), masked=self.window_masked(state), demoted=demoted,
        num_transfer=self.schedule[index],
        positions=jnp.broadcast_to(positions, (batch, positions.shape[0])),
        mask_token_id=self.mask_token_id)

  def commit(self, state: LoopState, commit: jax.Array, candidates: jax.Array) -> LoopState:
    """Writes committed candidates `[B, W]` into the canvas; advances step bookkeeping."""
    active = self.active(state)
    commit = commit & self.eligible(state) & active[:, None]
    start, p = self.window_start(state), self.prompt_length
    write = lambda array, new, offset=0: jax.lax.dynamic_update_slice_in_dim(
        array, jnp.where(commit, new, self.window_of(array, state, offset)), offset + start,
        axis=1)
    steps = jnp.broadcast_to(state.num_steps[:, None], commit.shape)
    step = active.astype(jnp.int32)
    return state.replace(
        tokens=write(state.tokens, candidates, p),
        masked=write(state.masked, jnp.zeros_like(commit)),
        unmask_order=write(state.unmask_order, steps),
        step_in_block=state.step_in_block + step, num_steps=state.num_steps + step)

  def canvas_window(self, state: LoopState) -> jax.Array:
    """`[B, W]` the canvas over the window."""
    return self.window_of(state.tokens, state, self.prompt_length)

  def _forward_window(self, state: LoopState, window_tokens: jax.Array) -> jax.Array:
    """Logits `[B, K, W, V]` of K candidate canvases that differ from `state.tokens` only
    over the window (`window_tokens [B, K, W]`)."""
    cfg, p = self.config, self.prompt_length
    batch, paths, w = window_tokens.shape
    start = p + self.window_start(state)
    if cfg.cache == "none":
      canvases = jax.lax.dynamic_update_slice_in_dim(
          jnp.repeat(state.tokens[:, None], paths, axis=1), window_tokens, start, axis=2)
      mask = (None if self.attention_mask is None
              else jnp.repeat(self.attention_mask, paths, axis=0))
      logits, _ = self.forward.full(canvases.reshape(batch * paths, -1), mask, start, w)
      return logits.reshape(batch, paths, w, -1)
    if cfg.cache == "prefix":
      # Queries over the whole response [P, T) (one static shape for every block); the
      # prompt and the finished blocks attend through their cached keys/values, the block
      # and everything after it fresh: Fast-dLLM's prefix cache. The finished blocks'
      # query outputs are computed and dropped.
      response = jnp.broadcast_to(state.tokens[:, None, p:], (batch, paths, cfg.gen_length))
      response = jax.lax.dynamic_update_slice_in_dim(
          response, window_tokens, self.window_start(state), axis=2)
      return self.forward.window(response, p, state.cache, self.attention_mask, w,
                                 fresh_from=start, offset=self.window_start(state))
    return self.forward.window(window_tokens, start, state.cache, self.attention_mask, w)

  def lookahead(self, state: LoopState, commits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Logits `[B, K, W, V]` of K look-ahead canvases per row, all in one model call:
    candidate k commits `tokens[:, k]` at `commits[:, k]` (`[B, K, W]`)."""
    window_tokens = jnp.where(commits, tokens, self.canvas_window(state)[:, None])
    return self._forward_window(state, window_tokens)

  def step_tokens(self) -> int:
    """Query positions a (non-refresh) step forward processes per canvas."""
    cfg, total = self.config, self.prompt_length + self.config.gen_length
    if cfg.cache == "none":
      return total
    return cfg.block_length if cfg.cache == "dual" else cfg.gen_length

  def charge(self, state: LoopState, forwards: jax.Array,
             tokens: jax.Array | int | None = None) -> LoopState:
    """Adds `forwards [B]` forwards (each times the CFG cost) to each row's NFE, each of
    `tokens` query positions (default: a step forward's, `step_tokens()`)."""
    n = forwards.astype(jnp.int32) * self.forward_cost
    tokens = self.step_tokens() if tokens is None else tokens
    return state.replace(nfe=state.nfe + n, forward_tokens=state.forward_tokens + n * tokens)

  def refresh_logits(self, state: LoopState) -> LoopState:
    """The forward for the canvas after a commit, unless no row is still in its block: the
    window against the cache, or a full refresh when one is due (`cache_refresh`)."""
    cfg = self.config
    active = self.active(state)

    def step_forward(state):
      return self._forward_window(state, self.canvas_window(state)[:, None])[:, 0], state.cache

    refreshing = cfg.cache != "none" and cfg.cache_refresh > 0
    due = refreshing & ((state.block_step + 1) % max(cfg.cache_refresh, 1) == 0)  # next step

    def run(state):
      if not refreshing:
        return step_forward(state)
      return jax.lax.cond(due, self._full_forward, step_forward, state)

    logits, cache = jax.lax.cond(jnp.any(active), run, lambda s: (s.logits, s.cache), state)
    tokens = jnp.where(due, state.tokens.shape[1], self.step_tokens())
    return self.charge(state.replace(logits=logits, cache=cache), active, tokens)

  def select_step(self, state: LoopState,
                  select: Callable[[StepView, jax.Array], jax.Array]) -> LoopState:
    """One step of a per-sequence rule `select(view, key) -> commit [W]`: select, commit,
    forward."""
    noise_keys, select_keys = self.step_keys(state)
    view = self.view(state, noise_keys)
    commit = jax.vmap(select)(view, select_keys)
    return self.refresh_logits(self.commit(state, commit, view.candidates))

  # ------------------------------------------------------------------ blocks
  def _full_forward(self, state: LoopState) -> tuple[jax.Array, KVCache | None]:
    """The window's logits and (with a cache) every position's keys/values."""
    return self.forward.full(
        state.tokens, self.attention_mask, self.prompt_length + self.window_start(state),
        self.window_length, with_cache=self.config.cache != "none")

  def start_block(self, state: LoopState, block: jax.Array | int) -> LoopState:
    """Enters `block`: one full forward (storing the cache) serves its first step."""
    state = state.replace(block=jnp.asarray(block, jnp.int32), block_step=jnp.int32(0),
                          step_in_block=jnp.zeros_like(state.step_in_block))
    logits, cache = self._full_forward(state)
    every_row = jnp.ones(state.nfe.shape, jnp.int32)  # every row's block starts masked
    return self.charge(state.replace(logits=logits, cache=cache), every_row,
                       state.tokens.shape[1])

  def block_continues(self, state: LoopState) -> jax.Array:
    """Whether the block's loop runs another step: a row still in it, step budget left."""
    return jnp.any(self.active(state)) & (state.block_step < self.config.max_block_steps)

  def step(self, state: LoopState) -> LoopState:
    """One iteration of a block's loop: the strategy's step, then the iteration count."""
    state = self.config.strategy.step(self, state)
    return state.replace(block_step=state.block_step + 1)


def row_keys_from(key: jax.Array, batch_size: int) -> jax.Array:
  """One key per row: the given `[B]` keys, or `fold_in(key, row)` from a single key."""
  key = jnp.asarray(key)
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.dtype != jnp.uint32 or key.ndim == 0 or key.shape[-1] != 2:
      raise ValueError(f"key must be a jax.random.key(seed) or [B] such keys (or legacy "
                       f"PRNGKey data [..., 2] uint32), got {key.dtype} {key.shape}.")
    key = jax.random.wrap_key_data(key)
  if key.ndim == 0:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size))
  if key.shape != (batch_size,):
    raise ValueError(f"key must be a single key or one key per row ({batch_size},), "
                     f"got shape {key.shape}.")
  return key


def init_decode(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
                key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
                eos_token_id: int, stop_token_ids: tuple[int, ...], policy: Any = None,
                targets: jax.Array | None = None) -> tuple[StepContext, LoopState]:
  """The step context and the initial state of `decode` (before the first block)."""
  batch, prompt_length = prompt_ids.shape
  canvas = jnp.concatenate(
      [prompt_ids.astype(jnp.int32),
       jnp.full((batch, config.gen_length), mask_token_id, jnp.int32)], axis=1)
  attention_mask = None
  if prompt_mask is not None:
    attention_mask = jnp.concatenate(
        [prompt_mask.astype(bool), jnp.ones((batch, config.gen_length), bool)], axis=1)
  forward = Forward(model=model, config=config, prompt_length=prompt_length,
                    mask_token_id=mask_token_id, eos_token_id=eos_token_id)
  if config.cache != "none" and not forward.cached:
    raise ValueError(f"cache={config.cache!r} needs a model with prefill/extend (an LLaDA), "
                     "not a plain function; use cache='none'.")
  strategy = config.strategy
  schedule = config.block_schedule() if strategy.uses_schedule else np.zeros((1,), np.int32)
  ctx = StepContext(
      config=config, forward=forward, attention_mask=attention_mask,
      prompt_length=prompt_length, mask_token_id=mask_token_id,
      stop_token_ids=stop_token_ids, schedule=jnp.asarray(schedule, jnp.int32), policy=policy,
      targets=None if targets is None else jnp.asarray(targets, jnp.int32))
  zeros = jnp.zeros((batch,), jnp.int32)
  # Placeholders with the shapes the first block's forward fills in.
  logits_shape = jax.eval_shape(lambda: ctx._full_forward(_blank_state(
      canvas, config, zeros, key, None, None)))
  logits = jnp.zeros(logits_shape[0].shape, logits_shape[0].dtype)
  cache = (None if logits_shape[1] is None
           else jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), logits_shape[1]))
  state = _blank_state(canvas, config, zeros, row_keys_from(key, batch), logits, cache)
  state = state.replace(strategy_state=strategy.init_state(ctx, batch))
  return ctx, state


def _blank_state(canvas, config, zeros, row_keys, logits, cache) -> LoopState:
  batch = canvas.shape[0]
  return LoopState(
      tokens=canvas, logits=logits,
      masked=jnp.ones((batch, config.gen_length), bool),
      unmask_order=jnp.full((batch, config.gen_length), -1, jnp.int32),
      step_in_block=zeros, num_steps=zeros, nfe=zeros, forward_tokens=zeros,
      row_keys=row_keys, block=jnp.int32(0), block_step=jnp.int32(0), cache=cache,
      strategy_state=None)


def result_from(ctx: StepContext, state: LoopState) -> GenerationResult:
  """The loop's output (unmask order padded with -1 over the prompt)."""
  batch = state.tokens.shape[0]
  order = jnp.concatenate(
      [jnp.full((batch, ctx.prompt_length), -1, jnp.int32), state.unmask_order], axis=1)
  return GenerationResult(
      tokens=state.tokens, nfe=state.nfe, num_steps=state.num_steps, unmask_order=order,
      forward_tokens=state.forward_tokens, strategy_state=state.strategy_state)


def decode_core(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
                key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
                eos_token_id: int, stop_token_ids: tuple[int, ...], policy: Any = None,
                targets: jax.Array | None = None) -> GenerationResult:
  """The loop itself: blocks left to right, steps until each block is committed."""
  ctx, state = init_decode(
      model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
      eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, policy=policy,
      targets=targets)

  def run_block(block_ctx: StepContext, block, state: LoopState) -> LoopState:
    state = block_ctx.start_block(state, block)
    return jax.lax.while_loop(block_ctx.block_continues, block_ctx.step, state)

  state = jax.lax.fori_loop(0, config.num_blocks, functools.partial(run_block, ctx), state)
  return result_from(ctx, state)


def decode(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
           key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
           eos_token_id: int, stop_token_ids: tuple[int, ...], policy: Any = None,
           targets: jax.Array | None = None) -> GenerationResult:
  """The pure, jittable, vmappable generation (see `generate` for the arguments).

  `model` is an NNX model (every cache mode) or a function `(tokens, mask) -> logits`
  (cache "none"). A strategy may wrap the loop (`Strategy.decode`, e.g. SMC's particles).
  """
  return config.strategy.decode(
      decode_core, model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
      eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, policy=policy, targets=targets)


@functools.partial(jax.jit, static_argnames=("graphdef", "policy_graphdef", "config", "ids"))
def _generate_jit(graphdef, weights, prompt_ids, prompt_mask, key, policy_graphdef,
                  policy_weights, targets=None, *, config, ids):
  model = nnx.merge(graphdef, weights)
  policy = None if policy_graphdef is None else nnx.merge(policy_graphdef, policy_weights)
  mask_token_id, eos_token_id, stop_token_ids = ids
  return decode(model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
                eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, policy=policy,
                targets=targets)


def _check_prompt_tokens(prompt_ids: np.ndarray, prompt_mask: np.ndarray | None,
                         vocab_size: int, mask_token_id: int) -> None:
  """Token ids must index the embedding (out of range gives NaN logits, not an error), and
  a prompt cannot hold the mask token: only the gen_length positions after it are decoded."""
  real = np.ones(prompt_ids.shape, bool) if prompt_mask is None else prompt_mask
  bad = real & ((prompt_ids < 0) | (prompt_ids >= vocab_size))
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise ValueError(f"prompt_ids[{row}, {col}] = {prompt_ids[row, col]} is outside the "
                     f"model's vocabulary [0, {vocab_size}); is the tokenizer the model's?")
  masked = real & (prompt_ids == mask_token_id)
  if masked.any():
    row, col = np.argwhere(masked)[0]
    raise ValueError(f"prompt_ids[{row}, {col}] is the mask token {mask_token_id}; the sampler "
                     "decodes only the gen_length positions after the prompt, so a masked "
                     "prompt position would stay masked. Remove it from the prompt.")


def check_generation(model: nnx.Module, config: SamplerConfig, prompt_shape: tuple[int, ...],
                     policy: Any = None) -> None:
  """Raises `ValueError` before any work for a model/config/prompt combination that cannot
  run (context length, cache support, a policy strategy without its policy)."""
  model_config = model.config
  if len(prompt_shape) != 2 or prompt_shape[1] < 1:
    raise ValueError(f"prompt_ids must be [batch, prompt_len] with prompt_len >= 1, got shape "
                     f"{prompt_shape}.")
  total = prompt_shape[1] + config.gen_length
  if total > model_config.max_sequence_length:
    raise ValueError(
        f"prompt ({prompt_shape[1]} tokens) + gen_length ({config.gen_length}) = {total} "
        f"exceeds the model context of {model_config.max_sequence_length} tokens; shorten the "
        "prompt or gen_length.")
  if config.strategy.needs_policy and policy is None:
    raise ValueError(f"strategy {config.strategy.name!r} needs the learned policy: pass "
                     "generate(..., policy=policy_rl.load_policy(DIR)).")


def generate(model: nnx.Module, prompt_ids: Any, config: SamplerConfig, key: jax.Array,
             prompt_mask: Any = None, *, policy: nnx.Module | None = None,
             targets: Any = None) -> GenerationResult:
  """Generates `config.gen_length` tokens after each prompt in one compiled program.

  Args:
    model: an NNX model called as `model(tokens, attention_mask) -> logits`, carrying
      `.config` (mask/EOS ids, context length), e.g. from `lookum_jax.load_model`.
    prompt_ids: int `[B, P]`; prompts of different lengths left-padded to one P
      (bucket P to a few sizes: a new P compiles a new program).
    config: the `SamplerConfig`.
    key: a `jax.random.key`, or `[B]` keys (one per row: a row's tokens then do not
      depend on the rest of the batch, even when sampling).
    prompt_mask: optional bool `[B, P]`, false on padding.
    policy: the learned unmasking policy, for strategies that read one (`policy_rl`).
    targets: optional int `[B, gen_length]` reference responses, read only by experiment
      controls that know the answer (LookUM's `selection="oracle"`).

  Returns:
    A `GenerationResult`.
  """
  prompt_ids = jnp.asarray(prompt_ids)
  if prompt_ids.ndim != 2 or not jnp.issubdtype(prompt_ids.dtype, jnp.integer):
    raise ValueError(
        f"prompt_ids must be an int array [batch, prompt_len], got {prompt_ids.dtype} "
        f"{prompt_ids.shape}.")
  check_generation(model, config, prompt_ids.shape, policy)
  model_config = model.config
  if prompt_mask is not None:
    prompt_mask = jnp.asarray(prompt_mask, bool)
    if prompt_mask.shape != prompt_ids.shape:
      raise ValueError(f"prompt_mask shape {prompt_mask.shape} must equal prompt_ids shape "
                       f"{prompt_ids.shape}.")
  mask_token_id = (config.mask_token_id if config.mask_token_id is not None
                   else model_config.mask_token_id)
  if not 0 <= mask_token_id < model_config.vocab_size:
    raise ValueError(f"mask_token_id {mask_token_id} is outside the model's vocabulary "
                     f"[0, {model_config.vocab_size}).")
  if not isinstance(prompt_ids, jax.core.Tracer):
    _check_prompt_tokens(np.asarray(prompt_ids),
                         None if prompt_mask is None else np.asarray(prompt_mask),
                         model_config.vocab_size, mask_token_id)
  graphdef, weights = nnx.split(model)
  policy_graphdef, policy_weights = (None, None) if policy is None else nnx.split(policy)
  ids = (int(mask_token_id), int(model_config.eos_token_id),
         tuple(int(i) for i in model_config.stop_token_ids))
  if targets is not None:
    targets = jnp.asarray(targets, jnp.int32)
    if targets.shape != (prompt_ids.shape[0], config.gen_length):
      raise ValueError(f"targets must be [batch, gen_length] = "
                       f"{(prompt_ids.shape[0], config.gen_length)}, got {targets.shape}.")
  if getattr(config.strategy, "needs_targets", False) and targets is None:
    raise ValueError(f"{config.strategy.label()} needs the reference answers: pass "
                     "generate(..., targets=[B, gen_length] token ids).")
  return _generate_jit(graphdef, weights, prompt_ids.astype(jnp.int32), prompt_mask, key,
                       policy_graphdef, policy_weights, targets, config=config, ids=ids)

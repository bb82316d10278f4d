"""The unmasking loop: a whole generation as one XLA program.

`generate` splits the NNX model into a static graph definition and traced weights, then runs
`decode` under `jax.jit`. Blocks are decoded left to right (`lax.fori_loop`); inside a block a
`lax.while_loop` runs denoising steps until every row has committed the block. A row that
finishes its block early is frozen (it spends no forward and draws no randomness) until the
others catch up, so its tokens and NFE do not depend on its batch.

Each block starts with one full forward (or, with `VicinityStart()`, a forward of the block
just finished and this one; `SamplerConfig.block_start`). Its logits serve the block's first
step and, under a KV cache (`SamplerConfig.cache`), it stores every layer's keys and values.
Every later step selects positions from the carried window statistics, commits them and runs
the forward for the new canvas, which the cache mode, a value (`sampling/cache.py`), owns:

  * `NoCache()`: the whole sequence, with the LM head over the response only;
  * `PrefixCache()`: the response from the block start on against the cached prompt and
    finished blocks, whose keys and values stay cached (Fast-dLLM's prefix cache; blocks
    share a few static window lengths, `prefix_window.py`, so a block may also forward a
    few finished positions, whose outputs are dropped);
  * `DualCache()`: the block only, against the cached prefix and suffix (Fast-dLLM).

The refresh schedule (`SamplerConfig.refresh_schedule`, from `cache_refresh`) owns when a step
forward is a full refresh instead (`PeriodicRefresh(n)`, `AdaptiveRefresh()`).

The loop does not carry the logits. Right after each forward it computes what the strategy
reads per position (`WindowStats`: the candidate token, drawn with the Gumbel noise of the
step that reads it, and the statistics the strategy names in `Strategy.reads`) and carries
that; only a strategy that declares `Strategy.needs_logits` carries the `[B, W, V]` logits.
The carried statistics, and every per-position array a strategy sees (`StepView`), cover a
*window* of response positions: the whole response without a cache, the current block with
one. Prompt positions are never in it, so nothing is computed or drawn for them. A strategy
such as LookUM that already ran the model on the chosen canvas hands that forward's
statistics back instead, so its look-ahead forward doubles as the next step's forward.

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
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.types import LoopState, StepContext, WindowStats, row_keys_from

ForwardFn = Callable[[jax.Array, jax.Array | None], jax.Array]


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
    return 2 if self.config.guided else 1

  @property
  def cached(self) -> bool:
    return hasattr(self.model, "prefill")

  def _finish(self, logits: jax.Array) -> jax.Array:
    logits = logits.astype(jnp.float32)
    if self.config.guided:
      cond, uncond = jnp.split(logits, 2, axis=0)
      logits = uncond + (self.config.cfg_scale + 1.0) * (cond - uncond)
    if self.config.logits_eos_inf:
      logits = logits.at[..., self.eos_token_id].set(-jnp.inf)
    return logits

  def _with_unconditional(self, tokens, attention_mask):
    if not self.config.guided:
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
             offset=0, cache_keys: int | None = None) -> jax.Array:
    """Logits `[B, K, length, V]` of candidate windows `[B, K, w]` at `start` against
    `cache`, for window positions `[offset, offset + length)` (`LLaDA.extend`)."""
    if self.config.guided:
      tokens = jnp.concatenate([tokens, tokens], axis=0)  # the window is in the response
      attention_mask = (None if attention_mask is None
                        else jnp.concatenate([attention_mask] * 2, axis=0))
    logits = self.model.extend(tokens, start, cache, attention_mask,
                               logits_window=(offset, length), fresh_from=fresh_from,
                               cache_keys=cache_keys)
    return self._finish(logits)


def init_decode(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
                key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
                eos_token_id: int, stop_token_ids: tuple[int, ...],
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
  if config.cache.holds_cache and not forward.cached:
    raise ValueError(f"cache={config.cache.name!r} needs a model with prefill/extend (an "
                     "LLaDA), not a plain function; use cache='none'.")
  strategy = config.strategy
  schedule = config.block_schedule() if strategy.uses_schedule else np.zeros((1,), np.int32)
  ctx = StepContext(
      config=config, forward=forward, attention_mask=attention_mask,
      prompt_length=prompt_length, mask_token_id=mask_token_id,
      stop_token_ids=stop_token_ids, schedule=jnp.asarray(schedule, jnp.int32),
      targets=None if targets is None else jnp.asarray(targets, jnp.int32))
  zeros = jnp.zeros((batch,), jnp.int32)
  blank = _blank_state(canvas, config, zeros, row_keys_from(key, batch), WindowStats(), None)

  def first_forward():
    logits, cache = ctx._full_forward(blank)
    return ctx.window_stats(blank, logits), cache

  # Placeholders with the shapes the first block's forward fills in.
  window, cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                               jax.eval_shape(first_forward))
  state = blank.replace(window=window, cache=cache,
                        strategy_state=strategy.init_state(ctx, batch))
  return ctx, state


def _blank_state(canvas, config, zeros, row_keys, window, cache) -> LoopState:
  batch = canvas.shape[0]
  return LoopState(
      tokens=canvas, window=window,
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
                eos_token_id: int, stop_token_ids: tuple[int, ...],
                targets: jax.Array | None = None) -> GenerationResult:
  """The loop itself: blocks left to right, steps until each block is committed."""
  ctx, state = init_decode(
      model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
      eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, targets=targets)

  def run_block(block_ctx: StepContext, block, state: LoopState) -> LoopState:
    state = block_ctx.start_block(state, block)
    return jax.lax.while_loop(block_ctx.block_continues, block_ctx.step, state)

  state = jax.lax.fori_loop(0, config.num_blocks, functools.partial(run_block, ctx), state)
  return result_from(ctx, state)


def decode(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
           key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
           eos_token_id: int, stop_token_ids: tuple[int, ...],
           targets: jax.Array | None = None) -> GenerationResult:
  """The pure, jittable, vmappable generation (see `generate` for the arguments).

  `model` is an NNX model (every cache mode) or a function `(tokens, mask) -> logits`
  (cache "none"). A strategy may wrap the loop (`Strategy.decode`, e.g. SMC's particles).
  """
  return config.strategy.decode(
      decode_core, model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
      eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, targets=targets)


# Compiler options of the decode program. XLA:CPU (jaxlib 0.10) hands some fusions (dots,
# reductions with their elementwise tails) to YNNPACK, by a size heuristic, and YNNPACK's
# kernels block the work by the whole operand's shape: a row then rounds differently batched
# than alone (the `small` bench model's logits by up to 3e-3, enough to flip a near-tied
# commit). With no YNN fusion types a row's forwards (block start, dual and prefix steps) are
# bitwise the same at batch 8 and 1 (`experiments/batch_invariance_probe.py`), at about the
# same single-threaded speed. The option names an XLA:CPU field, so only the CPU program
# carries it (`_generate_program`): GPU and TPU compilers are not asked to parse it.
BATCH_INVARIANT_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _generate_impl(graphdef, weights, prompt_ids, prompt_mask, key, targets=None, *, config,
                   ids):
  """The compiled generation. `config` is traced: its structure (lengths, cache mode, the
  strategy's static fields) keys the cache, its numbers (temperature, cfg_scale, the
  strategy's knobs and weights) are arguments, so a sweep over a number compiles once."""
  model = nnx.merge(graphdef, weights)
  mask_token_id, eos_token_id, stop_token_ids = ids
  return decode(model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
                eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, targets=targets)


# The CPU program (batch-invariant compiler options), and the same program without them.
_generate_jit = jax.jit(_generate_impl, static_argnames=("graphdef", "ids"),
                        compiler_options=BATCH_INVARIANT_COMPILER_OPTIONS)
_generate_jit_accelerator = jax.jit(_generate_impl, static_argnames=("graphdef", "ids"))


def _generate_program(*inputs: Any) -> Any:
  """`_generate_jit` for concrete inputs on CPU devices (or on no device yet: the default
  backend decides); otherwise the program without XLA:CPU's options: on an accelerator,
  and when an input is a tracer (`generate` inside a user's `jit`, where JAX accepts no
  compiler options, or under `vmap`)."""
  leaves = jax.tree.leaves(inputs)
  if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
    return _generate_jit_accelerator
  platforms = {d.platform for leaf in leaves if isinstance(leaf, jax.Array)
               for d in leaf.devices()} or {jax.default_backend()}
  return _generate_jit if platforms == {"cpu"} else _generate_jit_accelerator


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


def check_generation(model: nnx.Module, config: SamplerConfig, prompt_shape: tuple[int, ...]
                     ) -> None:
  """Raises `ValueError` before any work for a model/config/prompt combination that cannot
  run (context length, cache support, a policy strategy without its weights)."""
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
  config.strategy.check_ready()


def generate(model: nnx.Module, prompt_ids: Any, config: SamplerConfig, key: jax.Array,
             prompt_mask: Any = None, *, targets: Any = None) -> GenerationResult:
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
  check_generation(model, config, prompt_ids.shape)
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
  program = _generate_program(weights, prompt_ids, prompt_mask, key, targets)
  return program(graphdef, weights, prompt_ids.astype(jnp.int32), prompt_mask, key, targets,
                 config=config, ids=ids)

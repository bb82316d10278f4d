"""The masked-diffusion transformer in Flax NNX: LLaDA, and Dream through config flags.

One class serves both families. LLaDA is a LLaMA-style transformer with bidirectional
attention; Dream-7B (Qwen2 layout) differs only by flags of `ModelConfig`: `qkv_bias`
(biases on q/k/v), `tie_word_embeddings` (head = embedding transposed) and
`architecture="dream"`, whose logits are *shifted*: Dream was adapted from an autoregressive
model, so the output at position i-1 predicts the token at position i. The model returns
shifted logits already aligned with the canvas (as Dream's `diffusion_generate` does with
`cat([logits[:, :1], logits[:, :-1]])`), so samplers run unchanged.

Attribute names mirror the Hugging Face checkpoint (`wte`, `blocks[i].q_proj`, ...,
`ln_f`, `ff_out`) so the conversion table in `lookum_jax.convert` is a plain rename plus a
transpose. Kernels are stored `[in, out]` (PyTorch stores `[out, in]`).

Dtype policy: parameters live in `param_dtype`; matmuls run in `dtype`; RMSNorm
statistics, RoPE angles, attention softmax and the output logits are float32.

Decoding at length needs three things beyond `model(tokens)`, all here:
  * `logits_window=(start, length)`: the LM head runs only over those positions (never
    over the prompt). `start` may be traced, `length` is static.
  * `model.prefill(...)`: the full forward that also returns every layer's post-RoPE keys
    and values (`KVCache`), as Fast-dLLM's block-start forward stores them.
  * `model.extend(...)`: a forward of a contiguous window of positions whose keys and values
    are fresh, attending over the cached keys and values of every other position (Fast-dLLM's
    prefix mode: the window runs to the end; dual mode: the window is the block). Several
    candidate windows per cached row (LookUM's look-ahead canvases) share one cache.
    For Dream the cache also keeps every position's last-layer output, so the window's first
    position, whose logits come from the position before it, reads that position as cached.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from lookum_jax.model.config import ModelConfig

_INIT = nnx.initializers.normal(stddev=0.02)
_NEG_INF = jnp.finfo(jnp.float32).min


@struct.dataclass
class KVCache:
  """What a cached window needs of every position outside it, as of the last full forward.

  `k`, `v`: every layer's post-RoPE keys and values `[n_layers, B, T, n_kv_heads, head_dim]`.
  `hidden`: for a model with shifted logits (Dream) the last layer's output `[1, B, T, D]`
  (before the final norm), else None. Dream's logits at position i come from position i - 1,
  so the first position of a window reads the state of the position before it from here.
  `drift`: `[1, B]` float32, the sampler's adaptive refresh's measure of how far the cache is
  from the canvas (`lookum_jax.sampling.refresh`), or None; the model never reads it.
  Every leaf keeps the batch on axis 1, so gathering rows (`a[:, rows]`) applies to all.
  """

  k: jax.Array
  v: jax.Array
  hidden: jax.Array | None = None
  drift: jax.Array | None = None

  def write(self, start: int | jax.Array, k: jax.Array, v: jax.Array,
            hidden: jax.Array | None = None, keep: jax.Array | None = None) -> KVCache:
    """This cache with positions `[start, start + w)` replaced by a window's fresh keys and
    values `k`, `v` `[n_layers, B, w, kv, hd]` (and Dream's outputs `hidden [B, w, D]`),
    where `keep [w]` (default: everywhere) is true; `start` may be traced."""
    def put(old, new):
      if keep is not None:
        current = jax.lax.dynamic_slice_in_dim(old, start, new.shape[2], axis=2)
        shape = (1, 1, -1) + (1,) * (new.ndim - 3)
        new = jnp.where(keep.reshape(shape), new.astype(old.dtype), current)
      return jax.lax.dynamic_update_slice_in_dim(old, new.astype(old.dtype), start, axis=2)

    out = self.replace(k=put(self.k, k), v=put(self.v, v))
    if self.hidden is not None and hidden is not None:
      out = out.replace(hidden=put(self.hidden, hidden[None]))
    return out


class RMSNorm(nnx.Module):
  """RMSNorm with a learned scale and no bias; statistics in float32."""

  def __init__(self, dim: int, eps: float, *, param_dtype: jnp.dtype):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return self.weight[...].astype(x.dtype) * x32.astype(x.dtype)


class Dense(nnx.Module):
  """Linear layer, kernel `[in, out]`, with an optional bias `[out]` (Qwen2's q/k/v)."""

  def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs, dtype, param_dtype,
               use_bias: bool = False):
    self.kernel = nnx.Param(_INIT(rngs.params(), (d_in, d_out), param_dtype))
    if use_bias:
      self.bias = nnx.Param(jnp.zeros((d_out,), param_dtype))
    self.use_bias = use_bias
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    # '...D,DF->...F'
    y = jnp.einsum("...d,df->...f", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.use_bias:
      y = y + self.bias[...].astype(self.dtype)
    return y


def rope_angles(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
  """cos/sin tables `[B, L, head_dim / 2]` (float32) for half-rotation RoPE."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, hd/2]
  return jnp.cos(freqs), jnp.sin(freqs)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates `x [B, L, N, hd]` in float32: x*cos + rotate_half(x)*sin, where the first and
  second halves of the head dimension form the rotated pairs (not interleaved)."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  x1, x2 = x32[..., :half], x32[..., half:]
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Block(nnx.Module):
  """Pre-norm block: bidirectional attention with RoPE, then a SwiGLU MLP."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, dtype, param_dtype):
    d, hd = config.d_model, config.head_dim
    dense = lambda i, o, bias=False: Dense(i, o, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                                           use_bias=bias)
    self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
    self.attn_norm = RMSNorm(d, config.rms_norm_eps, param_dtype=param_dtype)
    self.q_proj = dense(d, config.n_heads * hd, config.qkv_bias)
    self.k_proj = dense(d, config.n_kv_heads * hd, config.qkv_bias)
    self.v_proj = dense(d, config.n_kv_heads * hd, config.qkv_bias)
    self.attn_out = dense(config.n_heads * hd, d)
    self.ff_norm = RMSNorm(d, config.rms_norm_eps, param_dtype=param_dtype)
    self.ff_proj = dense(d, config.mlp_hidden_size)  # gate
    self.up_proj = dense(d, config.mlp_hidden_size)
    self.ff_out = dense(config.mlp_hidden_size, d)  # down
    self.dtype = dtype

  def qkv(self, x: jax.Array, cos: jax.Array, sin: jax.Array
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Post-RoPE q `[B, L, H, hd]`, k and v `[B, L, kv, hd]` of normed inputs `x`."""
    b, t, _ = x.shape
    hd = self.head_dim
    q = apply_rope(self.q_proj(x).reshape(b, t, self.n_heads, hd), cos, sin)
    k = apply_rope(self.k_proj(x).reshape(b, t, self.n_kv_heads, hd), cos, sin)
    v = self.v_proj(x).reshape(b, t, self.n_kv_heads, hd)
    return q, k, v

  def mlp(self, x: jax.Array) -> jax.Array:
    h = self.ff_norm(x)
    return x + self.ff_out(jax.nn.silu(self.ff_proj(h)) * self.up_proj(h))

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array,
               key_mask: jax.Array | None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Full bidirectional block over `x [B, T, D]`; also returns this layer's (k, v)."""
    b, t, _ = x.shape
    q, k, v = self.qkv(self.attn_norm(x), cos, sin)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1(T), S]
    # jax.nn.dot_product_attention: cuDNN flash attention on GPU, XLA elsewhere; softmax in
    # float32; grouped-query heads broadcast (H a multiple of kv).
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    x = x + self.attn_out(out.reshape(b, t, self.n_heads * self.head_dim))
    return self.mlp(x), (k, v)

  def window(self, x: jax.Array, cos: jax.Array, sin: jax.Array, start: jax.Array,
             cached_k: jax.Array, cached_v: jax.Array, key_mask: jax.Array | None,
             fresh_from: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """A window of `w` positions per candidate, `x [B, K, w, D]` at `[start, start + w)`,
    against a cache `[B, T, kv, hd]`: window positions from `fresh_from` on use their own
    fresh keys/values; every other position (before `fresh_from`, after the window) uses the
    cached ones.

    The two key sets are scored separately and normalised together (one softmax over
    `T + w` keys), so the cache is never copied, not even once per candidate. Also returns
    the window's fresh keys and values `[B, K, w, kv, hd]`.
    """
    b, paths, w, d = x.shape
    kv, hd = self.n_kv_heads, self.head_dim
    group = self.n_heads // kv
    q, k, v = self.qkv(self.attn_norm(x).reshape(b * paths, w, d), cos, sin)
    q = q.reshape(b, paths, w, kv, group, hd)
    k, v = k.reshape(b, paths, w, kv, hd), v.reshape(b, paths, w, kv, hd)
    scale = 1.0 / jnp.sqrt(jnp.float32(hd))
    t = cached_k.shape[1]
    cached = jnp.einsum("bpqkgh,bskh->bpkgqs", q, cached_k,
                        preferred_element_type=jnp.float32) * scale
    pos = jnp.arange(t)
    from_cache = (pos < fresh_from) | (pos >= start + w)  # [T]
    valid = from_cache[None] if key_mask is None else key_mask & from_cache[None]  # [B, T]
    cached = jnp.where(valid[:, None, None, None, None, :], cached, _NEG_INF)
    fresh = jnp.einsum("bpqkgh,bpskh->bpkgqs", q, k,
                       preferred_element_type=jnp.float32) * scale
    fresh_valid = start + jnp.arange(w) >= fresh_from  # [w] (window positions are real)
    fresh = jnp.where(fresh_valid, fresh, _NEG_INF)
    probs = jax.nn.softmax(jnp.concatenate([cached, fresh], axis=-1), axis=-1)
    probs = probs.astype(self.dtype)
    out = (jnp.einsum("bpkgqs,bskh->bpqkgh", probs[..., :t], cached_v)
           + jnp.einsum("bpkgqs,bpskh->bpqkgh", probs[..., t:], v))
    x = x + self.attn_out(out.reshape(b, paths, w, self.n_heads * hd))
    return self.mlp(x), (k, v)


def shift_logits(logits: jax.Array) -> jax.Array:
  """Dream's alignment of raw outputs `[B, T, V]` with the canvas: the output at position
  i - 1 predicts token i, and position 0 keeps its own (`cat([l[:, :1], l[:, :-1]])`, as
  Dream's `diffusion_generate`)."""
  return jnp.concatenate([logits[:, :1], logits[:, :-1]], axis=1)


def stack_blocks(blocks: list[Block]) -> Block:
  """One `Block` whose parameters are the given blocks' stacked on a leading layer axis."""
  graphdef, *states = nnx.split(blocks[0]), *[nnx.state(b) for b in blocks[1:]]
  graphdef, first = graphdef
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), first, *states)
  return nnx.merge(graphdef, stacked)


class LLaDA(nnx.Module):
  """The masked-diffusion transformer: `model(tokens, attention_mask) -> logits`.

  LLaDA by default; Dream when `config.architecture == "dream"` (q/k/v biases, optional
  tied head, shifted logits; see the module docstring).

  `scan_layers=True` stores the blocks stacked (`blocks.q_proj.kernel [n_layers, ...]`) and
  runs them with `lax.scan`: the program holds one layer instead of `n_layers` copies and
  about a third less temp memory (`experiments/bench_memory.py`), with the same math (logits
  equal up to float rounding). `load_model` builds this layout by default, straight from the
  checkpoint; `scan_model` turns a per-layer model into it.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs,
               dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype = jnp.float32,
               scan_layers: bool = False):
    self.config = config
    self.dtype = dtype
    self.scan_layers = scan_layers
    self.wte = nnx.Param(_INIT(rngs.params(), (config.vocab_size, config.d_model), param_dtype))
    blocks = [Block(config, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
              for _ in range(config.n_layers)]
    self.blocks = stack_blocks(blocks) if scan_layers else nnx.List(blocks)
    self.ln_f = RMSNorm(config.d_model, config.rms_norm_eps, param_dtype=param_dtype)
    if not config.tie_word_embeddings:
      self.ff_out = nnx.Param(_INIT(rngs.params(), (config.d_model, config.vocab_size),
                                    param_dtype))

  @property
  def shifts_logits(self) -> bool:
    """Whether the output at position i-1 predicts token i (Dream)."""
    return self.config.architecture == "dream"

  def head(self) -> jax.Array:
    """The output projection `[D, V]`: `ff_out`, or the embedding transposed when tied."""
    if self.config.tie_word_embeddings:
      return self.wte[...].T
    return self.ff_out[...]

  def _logits(self, x: jax.Array) -> jax.Array:
    """float32 logits `[..., V]` of final hidden states `[..., D]`."""
    return jnp.einsum("...d,dv->...v", self.ln_f(x), self.head().astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def _check(self, tokens: jax.Array, attention_mask: jax.Array | None) -> None:
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be [batch, length], got shape {tokens.shape}.")
    if tokens.shape[1] > self.config.max_sequence_length:
      raise ValueError(
          f"sequence length {tokens.shape[1]} exceeds the model context "
          f"{self.config.max_sequence_length}; shorten the prompt or gen_length.")
    if attention_mask is not None and attention_mask.shape != tokens.shape:
      raise ValueError(
          f"attention_mask shape {attention_mask.shape} must equal tokens shape {tokens.shape}.")

  @staticmethod
  def positions(attention_mask: jax.Array | None, batch: int, length: int) -> jax.Array:
    """RoPE positions `[B, T]`: padding does not advance them, so a padded row is
    rotated as it would be alone (`cumsum(mask) - 1`, as LLaDA's and Dream's evals do)."""
    if attention_mask is None:
      return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    mask = attention_mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)

  def _window_hidden(self, x: jax.Array, logits_window: tuple | None) -> jax.Array:
    """Hidden states `[B, L, D]` whose outputs are the logits of `logits_window`."""
    if logits_window is None:
      return x
    start, length = logits_window
    if self.shifts_logits:
      # Logits of position i come from hidden state i - 1; position 0 keeps its own.
      index = jnp.maximum(start - 1 + jnp.arange(length), 0)
      index = index.at[0].set(jnp.maximum(start - 1, 0))
      return jnp.take(x, index, axis=1)
    return jax.lax.dynamic_slice_in_dim(x, start, length, axis=1)

  def _forward(self, tokens, attention_mask, logits_window):
    self._check(tokens, attention_mask)
    b, t = tokens.shape
    key_mask = None if attention_mask is None else attention_mask.astype(bool)
    cos, sin = rope_angles(self.positions(attention_mask, b, t), self.config.head_dim,
                           self.config.rope_theta)
    x = jnp.take(self.wte[...], tokens, axis=0).astype(self.dtype)
    x, (keys, values) = self._layers(
        lambda block, x, _: block(x, cos, sin, key_mask), x, None)
    if self.shifts_logits and logits_window is None:
      logits = shift_logits(self._logits(x))
    else:
      logits = self._logits(self._window_hidden(x, logits_window))
    # Dream's cached windows read the output of the position before them (`extend`).
    hidden = x[None] if self.shifts_logits else None
    return logits, KVCache(k=keys, v=values, hidden=hidden)

  def _layers(self, layer_fn, x: jax.Array, per_layer: Any) -> tuple[jax.Array, Any]:
    """Runs `layer_fn(block, x, per_layer[i]) -> (x, out)` over the blocks (a Python loop,
    or `lax.scan` when stacked); per-layer outputs are stacked on a leading axis. A layer
    function returning x alone gives `(x, None)`."""
    def call(block, x, extra):
      out = layer_fn(block, x, extra)
      return out if isinstance(out, tuple) else (out, None)

    if self.scan_layers:
      graphdef, state = nnx.split(self.blocks)
      return jax.lax.scan(lambda x, xs: call(nnx.merge(graphdef, xs[0]), x, xs[1]), x,
                          (state, per_layer))
    outs = []
    for i, block in enumerate(self.blocks):
      x, out = call(block, x, None if per_layer is None else
                    jax.tree.map(lambda a, i=i: a[i], per_layer))
      outs.append(out)
    if outs[0] is None:
      return x, None
    return x, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  def __call__(self, tokens: jax.Array, attention_mask: jax.Array | None = None, *,
               logits_window: tuple[int | jax.Array, int] | None = None) -> jax.Array:
    """Logits `[B, L, V]` (float32) for int tokens `[B, L]`.

    Args:
      tokens: int32 `[B, T]`.
      attention_mask: optional bool/int `[B, T]`, true for real tokens. Padding
        (left or right) is excluded as an attention key and does not advance
        RoPE positions, so a padded row gives the logits it would alone.
      logits_window: `(start, length)`: return logits `[B, length, V]` of positions
        `[start, start + length)` only (the head never runs elsewhere). `start` may be
        traced; `length` must be static.
    """
    return self._forward(tokens, attention_mask, logits_window)[0]

  def prefill(self, tokens: jax.Array, attention_mask: jax.Array | None = None, *,
              logits_window: tuple[int | jax.Array, int] | None = None
              ) -> tuple[jax.Array, KVCache]:
    """`__call__`'s logits and the `KVCache` of every position (a cache refresh)."""
    return self._forward(tokens, attention_mask, logits_window)

  def extend(self, tokens: jax.Array, start: int | jax.Array, cache: KVCache,
             attention_mask: jax.Array | None = None, *,
             logits_window: tuple[int | jax.Array, int] | None = None,
             fresh_from: int | jax.Array | None = None, return_kv: bool = False,
             cache_keys: int | None = None) -> jax.Array | tuple[jax.Array, KVCache]:
    """Logits of a window of positions against a cache: `[B, K, length, V]` float32.

    Args:
      tokens: int `[B, K, w]`: K candidate contents of positions `[start, start + w)` of
        each cached row (K = 1 for a plain step). Their keys and values are computed
        fresh (from `fresh_from` on); every other position's come from `cache`
        (`[n_layers, B, T, ...]`).
      start: first position of the window (may be traced).
      cache: from `prefill` on the same rows.
      attention_mask: the rows' `[B, T]` padding mask, as given to `prefill`.
      logits_window: `(offset, length)` within the window (default: all of it); the
        offset may be traced.
      fresh_from: window positions before it attend with (and are attended through)
        their cached keys/values, not fresh ones (default `start`: all fresh). Fast-dLLM's
        prefix cache is a canvas tail `[T - L, T)` with `fresh_from = block_start`: a few
        static lengths L serve every block (`sampling.prefix_window`), the positions before
        the block start attending through the cached prefix exactly as theirs.
      return_kv: also return the window's own keys and values, a `KVCache` whose leaves are
        `[n_layers, B, K, w, ...]` (`hidden`: the last layer's output `[B, K, w, D]`, for
        every model), to measure a cache's drift or write the window into it
        (`KVCache.write`). Positions before `fresh_from` hold values computed but unused.
      cache_keys: attend to the cache's first `cache_keys` positions only (static; default:
        all T). Every position from it on must be a fresh window position: the window ends
        at the canvas end and starts, as does `fresh_from`, at or before `cache_keys`. The
        prefix cache's window `[T - L, T)` with `cache_keys = block_start` spans T keys, as
        Fast-dLLM's `x[block_start:]` against its cached prefix does, not T + L.

    Dream (shifted logits): a window position's logits come from the position before it,
    fresh when that position is fresh, else its output as of the cache's forward
    (`KVCache.hidden`); so the window's first position reads the cache, and against a cache
    of the same canvas every logit equals the full forward's.
    """
    if tokens.ndim != 3:
      raise ValueError(f"extend takes tokens [batch, candidates, window], got {tokens.shape}.")
    b, paths, w = tokens.shape
    t = cache.k.shape[2]
    fresh_from = start if fresh_from is None else fresh_from
    if cache.k.shape[1] != b:
      raise ValueError(f"tokens have {b} rows but the cache holds {cache.k.shape[1]}.")
    keys = t if cache_keys is None else int(cache_keys)
    if not 0 < keys <= t:
      raise ValueError(f"cache_keys={cache_keys} must be in [1, {t}] (the cache's length).")
    bounds = (start, fresh_from)
    if keys < t and all(isinstance(x, int) for x in bounds) and (
        start + w != t or max(bounds) > keys):
      raise ValueError(f"cache_keys={keys} drops cached positions [{keys}, {t}) that the window "
                       f"[{start}, {start + w}) fresh from {fresh_from} does not recompute; "
                       "the window must end at the canvas end and start at or before it.")
    if self.shifts_logits and cache.hidden is None:
      raise ValueError("this model's logits are shifted (Dream): extend needs a cache from its "
                       "own prefill, which keeps every position's output (KVCache.hidden).")
    key_mask = None if attention_mask is None else attention_mask.astype(bool)
    positions = jax.lax.dynamic_slice_in_dim(self.positions(attention_mask, b, t), start, w, 1)
    positions = jnp.repeat(positions, paths, axis=0)  # [B * K, w]
    cos, sin = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
    x = jnp.take(self.wte[...], tokens, axis=0).astype(self.dtype)  # [B, K, w, D]
    def layer(block, x, kv):
      x, fresh = block.window(x, cos, sin, start, kv[0][:, :keys], kv[1][:, :keys],
                              None if key_mask is None else key_mask[:, :keys], fresh_from)
      return (x, fresh) if return_kv else x

    x, fresh = self._layers(layer, x, (cache.k, cache.v))
    offset, length = (0, w) if logits_window is None else logits_window
    if self.shifts_logits:
      logits = self._logits(self._shifted_window_hidden(x, cache.hidden[0], start, offset,
                                                        length, fresh_from))
    else:
      logits = self._logits(jax.lax.dynamic_slice_in_dim(x, offset, length, axis=2))
    if return_kv:
      return logits, KVCache(k=fresh[0], v=fresh[1], hidden=x)
    return logits

  @staticmethod
  def _shifted_window_hidden(x: jax.Array, cached: jax.Array, start, offset, length: int,
                             fresh_from) -> jax.Array:
    """Dream's hidden states `[B, K, length, D]` for the logits of the `length` window
    positions from `start + offset`: position i reads position i - 1 (position 0 its own).

    A position that attends through its cached keys/values (before `fresh_from`, or outside
    the window) is represented by the cache entirely, its output included: its state comes
    from `cached [B, T, D]` (the last full forward), shared by the K candidates. A fresh
    window position's state comes from the window `x [B, K, w, D]`. So the window's first
    position reads the cache, as Fast-dLLM's block-start forward predicts it.
    """
    w = x.shape[2]
    source = jnp.maximum(start + offset + jnp.arange(length) - 1, 0)  # [length]
    fresh = (source >= fresh_from) & (source >= start) & (source < start + w)
    from_window = jnp.take(x, jnp.clip(source - start, 0, w - 1), axis=2)  # [B, K, length, D]
    from_cache = jnp.take(cached, source, axis=1)[:, None]  # [B, 1, length, D]
    return jnp.where(fresh[:, None], from_window, from_cache.astype(x.dtype))


def init_model(config: ModelConfig, seed: int = 0, *, dtype=None, param_dtype=None,
               scan_layers: bool = False) -> LLaDA:
  """A randomly initialised model of the config's architecture (float32 by default; tests,
  toy training)."""
  return LLaDA(config, rngs=nnx.Rngs(seed), dtype=dtype or jnp.float32,
               param_dtype=param_dtype or jnp.float32, scan_layers=scan_layers)


def abstract_model(config: ModelConfig, *, dtype=None, param_dtype=None,
                   scan_layers: bool = False) -> LLaDA:
  """The model with `ShapeDtypeStruct` leaves: no memory, for filling from a checkpoint."""
  return nnx.eval_shape(lambda: init_model(config, dtype=dtype, param_dtype=param_dtype,
                                           scan_layers=scan_layers))


def scan_model(model: LLaDA) -> LLaDA:
  """The same weights in the stacked, `lax.scan` layout (`scan_layers=True`); one copy of
  the block weights is made."""
  if model.scan_layers:
    return model
  scanned = nnx.eval_shape(lambda: LLaDA(model.config, rngs=nnx.Rngs(0), dtype=model.dtype,
                                         scan_layers=True))
  graphdef, _ = nnx.split(scanned)
  state = nnx.state(model)
  blocks = [state["blocks"][i] for i in range(model.config.n_layers)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  state_dict = {k: v for k, v in state.items() if k != "blocks"}
  new_state = nnx.State({**state_dict, "blocks": stacked})
  return nnx.merge(graphdef, new_state)

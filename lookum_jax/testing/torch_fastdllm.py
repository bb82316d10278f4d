"""An independent eager PyTorch port of Fast-dLLM's KV-cached LLaDA decoding, for parity tests.

Fast-dLLM (github.com/NVlabs/Fast-dLLM, `llada/generate.py`: `generate_with_prefix_cache`,
`generate_with_dual_cache`, `get_transfer_index`, `get_num_transfer_tokens`; attention in
`llada/model/modeling_llada.py`) speeds up LLaDA's semi-autoregressive decoding with an
approximate KV cache. This module re-implements it on `TorchLLaDA`'s weights with its own
cached forward, sharing no code with `lookum_jax.sampling`: the point is to check it.

The cached forward
------------------
`forward_with_kv(model, tokens)` is a full forward returning logits and every layer's K/V;
`partial_forward(model, tokens_slice, start, cache)` runs fresh queries/keys/values over the
contiguous positions `[start, start + L)` of the canvas and attends over all keys: the cached
ones outside the slice and the fresh ones inside. Attention is bidirectional with no mask
(Fast-dLLM masks nothing: its cached path builds a causal bias but never passes it to SDPA).
RoPE positions are absolute canvas positions: Fast-dLLM rotates the keys at 0..key_len-1 and
the queries at `key_len - query_len ..` (prefix cache) or `block_end - query_len ..` (dual
cache, `replace_indices.max() + 1` is the block end), i.e. `[start, start + L)` in both.
Fast-dLLM caches *pre*-RoPE keys and re-rotates the whole key set on every call; here the
cache holds post-RoPE keys, which is the same in exact arithmetic. Numerics follow
`TorchLLaDA` (RoPE angles in float64), not Fast-dLLM's float32 RoPE table.

Decoding semantics reproduced (`torch_fastdllm_generate`)
--------------------------------------------------------
- Blocks: `gen_length % block_length == 0`, `steps % num_blocks == 0`, `steps // num_blocks`
  steps per block. Positions outside the current block are never committed.
- Per block: one full forward over the whole canvas ("block-start" forward) whose logits serve
  the block's first step and whose K/V become the cache — prefix mode keeps positions
  `[0, block_start)`, dual mode keeps all of them. Then cached partial forwards — prefix:
  over `[block_start, T)` (the current block *and* all later blocks get fresh Q/K/V; only the
  current block may commit), dual: over `[block_start, block_end)` — until the block holds no
  mask token. The cache is never refreshed inside a block (Fast-dLLM's dual cache is
  overwritten in place at the block's positions each step, which changes nothing since
  those keys are recomputed at every step; here the cache is not mutated).
- The stopping test runs only after a cached step: even when the block-start step commits the
  whole block, one more (wasted) cached forward runs and commits nothing.
- NFE: one per forward of the (batched) model, block-start forwards included. Fixed-step mode
  therefore spends exactly `steps` forwards when `steps // num_blocks <= block_length`; with
  more steps per block than block positions the schedule ends in zero-token steps and the
  loop stops as soon as the block is full (NFE = `gen_length`, unlike LLaDA's `generate`,
  which runs every step). Threshold mode spends between `2 * num_blocks` (everything
  committed at the block start, plus the wasted forward) and `gen_length` forwards (for
  `block_length >= 2`, and as long as no step's top-1 is the mask token itself).
- Fixed-step schedule (`threshold=None`): LLaDA's `get_num_transfer_tokens` over the block's
  masked count (the block is fully masked at its start), indexed by the step within the
  block; the most confident masked positions of the block are committed (`torch.topk`).
- Threshold rule (`get_transfer_index` with `threshold`): every masked position of the block
  is ranked by confidence; the top-1 is always committed and each other one is dropped iff
  `confidence < threshold`, i.e. kept iff `confidence >= threshold` (non-strict).
- Confidence: softmax probability (in float64) of the argmax token. Temperature 0 only.
- The mask token *can* be a candidate (Fast-dLLM takes a plain argmax): "committing" it is a
  no-op that still uses a slot of the step's budget. `mask_is_candidate=False` instead gives
  the mask logit -inf for the argmax only (confidences still from the unmodified softmax),
  this project's documented deviation in `torch_llada.torch_reference_generate`.
- The block-start step's candidates are the masked positions of `[0, block_end)` (Fast-dLLM
  zeroes the mask only after the block end), so a prompt containing the mask id would have
  those positions filled too; cached steps only see the current block. Reproduced.
- Batch: Fast-dLLM's functions are batch-1 only (the canvas is `torch.full((1, ...))`, and the
  dual cache's `replace_position.nonzero()[1]` indexes would not fit a batch). This port is
  the batched loop their code implies: every row gets the same fixed schedule (each row's
  block starts fully masked) and its own threshold selection; the block loop stops only when
  *no* row of the batch has a mask left in the block (their `.sum() == 0`), so a row that
  finishes first rides along committing nothing (its top-k is empty) while the others
  continue. Tokens of each row are those it gets alone; the NFE is the batch's (per block, the
  maximum over rows), so it can exceed a single row's.

Where Fast-dLLM's code looks unintended (reproduced unless noted)
----------------------------------------------------------------
- The wasted cached forward after a block that the block-start step completed (above).
- With one step per block in fixed-step mode, the first cached step reads
  `num_transfer_tokens[:, 1]` of a one-column schedule and raises IndexError: rejected here
  with a ValueError. Likewise, when the mask token was "committed" and the fixed schedule runs
  out before the block is full, Fast-dLLM raises IndexError: here a RuntimeError.
- In threshold mode, a block whose remaining positions all predict the mask token makes no
  progress and Fast-dLLM loops forever; here a RuntimeError once the loop provably repeats.
- `generate_with_prefix_cache` draws `add_gumbel_noise` twice per cached step (once unused),
  which would double the RNG consumption at temperature > 0 (irrelevant here: argmax only).
- Candidates at the block-start step include earlier positions (prompt) holding the mask id.
- Dual cache with batch > 1 fails (`replace_indices` repeats per row) and it writes into the
  cache tensors in place.

Our extension (not Fast-dLLM): `refresh_every=r` replaces the cached forward of every step
whose index within the block is a multiple of `r` (the block-start step is index 0) by a full
forward, whose logits serve that step (committing in the current block only, as the cached
step it replaces) and whose K/V refresh the whole cache. NFE stays one per step;
`refresh_every=1` makes every forward a full one, i.e. exact uncached decoding.

Our extension: the adaptive refresh and the vicinity block start
---------------------------------------------------------------
The eager reference of `lookum_jax.sampling.refresh`, written from its rule, not its code.
`refresh_threshold=t`: after each cached step forward, a row's drift is the largest, over
layers from `refresh_from_layer` on, of the relative L2 change of the slice's fresh keys and
values (together) against those the last full forward computed at the same positions; every
row still holding a mask in its block whose drift exceeds `t` gets a full forward at once:
its logits (over the same slice) and its cache are replaced; the other rows keep theirs. NFE
counts the cached forward and, when some row refreshed, the full one (batch-level).
`vicinity=True`: each block after the first starts with a cached forward over the previous
block and this one (dual; prefix: from the previous block to the canvas end) instead of a
full forward; its keys/values replace the cache's at those positions (and the drift's
reference), its logits over the block serve the block's first step, committing in the block
only.

Dream mode (our semantics, not Fast-dLLM's Dream code)
------------------------------------------------------
For a Dream model (`config.architecture == "dream"`: q/k/v biases, optionally a tied head)
the logits are shifted: position i reads the output of position i - 1 (position 0 its own).
A full forward shifts over the whole canvas. A cached forward over `[start, end)` shifts
inside the slice, and its first position reads the output of position `start - 1` as of the
last full forward (every position outside the slice is represented by that forward: keys,
values and output). Everything else (blocks, schedule, threshold, NFE, stopping) is the LLaDA
port above. Fast-dLLM's own Dream code (`dream/model/generation_utils_block.py`) differs: it
shifts the cached slice's logits as if the slice were the whole canvas (its first position
reads its own output) and hides that by committing the block's first position from the
block-start forward unconditionally, outside the strategy's choice; here no position is
committed that the rule does not choose, and the first position's logits are the shifted
ones. The block-start forward gives the block's first position the same logits in both.

Imports torch (a test and benchmark dependency): import this module explicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lookum_jax.testing.torch_llada import TorchLLaDA, get_num_transfer_tokens

# Per layer: (keys after RoPE, values), each [B, n_kv_heads, length, head_dim].
KVCache = list[tuple[torch.Tensor, torch.Tensor]]

CACHE_MODES = ("prefix", "dual")


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
  return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
  """Half-rotation RoPE of `x [B, H, L, hd]` at absolute `positions [L]` (angles in float64)."""
  head_dim = x.shape[-1]
  inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=x.device)
                       / head_dim)
  angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [L, hd/2]
  angles = torch.cat([angles, angles], dim=-1)
  cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
  half = head_dim // 2
  rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
  return x * cos + rotated * sin


def _check_cache(cache: KVCache, n_layers: int, start: int, end: int) -> None:
  if len(cache) != n_layers:
    raise ValueError(f"cache has {len(cache)} layers, the model {n_layers}.")
  cached = cache[0][0].shape[2]
  if cached != start and cached < end:
    raise ValueError(
        f"cache covers positions [0, {cached}): a slice [{start}, {end}) needs exactly the "
        f"prefix [0, {start}) (prefix cache) or at least [0, {end}) (dual cache).")


def _projection(weights: dict[str, torch.Tensor], name: str, h: torch.Tensor) -> torch.Tensor:
  """`h @ kernel`, plus the bias where the weights hold one (Dream's q/k/v)."""
  out = h @ weights[name]
  bias = weights.get(f"{name}.bias")
  return out if bias is None else out + bias


def _head(model: TorchLLaDA, x: torch.Tensor) -> torch.Tensor:
  """Logits of last-layer outputs `x [..., D]`: final norm, then `ff_out` (or the tied
  embedding transposed)."""
  w = model.weights
  head = w["ff_out"] if "ff_out" in w else w["wte"].T
  return _rms_norm(x, w["ln_f"], model.config.rms_norm_eps) @ head


@torch.inference_mode()
def _forward(model: TorchLLaDA, tokens: torch.Tensor, start: int, cache: KVCache | None
             ) -> tuple[torch.Tensor, KVCache, torch.Tensor]:
  """Raw (unshifted) logits of `tokens` (canvas positions `[start, start + L)`), their fresh
  K/V, and their last-layer outputs `[B, L, D]`.

  Keys/values attended: `cache[:start]`, then the fresh ones, then `cache[start + L:]`
  (empty for a prefix cache); with `cache=None` only the fresh ones (a full forward).
  """
  cfg = model.config
  w = model.weights
  tokens = tokens.to(model.device)
  batch, length = tokens.shape
  end = start + length
  if cache is not None:
    _check_cache(cache, cfg.n_layers, start, end)
  hd = cfg.head_dim
  group = cfg.n_heads // cfg.n_kv_heads  # query head h reads kv head h // group
  positions = torch.arange(start, end, device=model.device)
  eps = cfg.rms_norm_eps
  x = w["wte"][tokens]
  fresh: KVCache = []
  for i in range(cfg.n_layers):
    layer = lambda name, i=i: w[f"blocks.{i}.{name}"]
    h = _rms_norm(x, layer("attn_norm"), eps)
    project = lambda name, i=i, h=h: _projection(w, f"blocks.{i}.{name}", h)
    q = project("q_proj").view(batch, length, cfg.n_heads, hd).transpose(1, 2)
    k = project("k_proj").view(batch, length, cfg.n_kv_heads, hd).transpose(1, 2)
    v = project("v_proj").view(batch, length, cfg.n_kv_heads, hd).transpose(1, 2)
    q = _rotate(q, positions, cfg.rope_theta)
    k = _rotate(k, positions, cfg.rope_theta)
    fresh.append((k, v))
    keys, values = k, v
    if cache is not None:
      cached_k, cached_v = cache[i]
      keys = torch.cat([cached_k[:, :, :start], k, cached_k[:, :, end:]], dim=2)
      values = torch.cat([cached_v[:, :, :start], v, cached_v[:, :, end:]], dim=2)
    keys = keys.repeat_interleave(group, dim=1)
    values = values.repeat_interleave(group, dim=1)
    scores = (q @ keys.transpose(-1, -2)) / (hd ** 0.5)  # [B, H, L, key_len], no mask
    attended = torch.softmax(scores, dim=-1) @ values
    x = x + attended.transpose(1, 2).reshape(batch, length, cfg.n_heads * hd) @ layer("attn_out")
    h = _rms_norm(x, layer("ff_norm"), eps)
    x = x + (F.silu(h @ layer("ff_proj")) * (h @ layer("up_proj"))) @ layer("ff_out")
  return _head(model, x), fresh, x


def forward_with_kv(model: TorchLLaDA, tokens: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
  """Full forward over the canvas `tokens [B, T]`: logits `[B, T, V]` and each layer's K/V.

  Keys are post-RoPE, at positions 0..T-1; no padding (no attention mask). Raw logits: a
  Dream model's are not shifted here (`torch_fastdllm_generate` shifts them).
  """
  return _forward(model, tokens, 0, None)[:2]


def partial_forward(model: TorchLLaDA, tokens: torch.Tensor, start: int, cache: KVCache
                    ) -> torch.Tensor:
  """Logits `[B, L, V]` of the canvas slice `tokens [B, L]` at positions `[start, start + L)`.

  The slice's queries, keys and values are fresh (RoPE at its absolute positions); it attends
  over the cached K/V of every position outside the slice plus its own fresh K/V. The cache
  is either a prefix cache (exactly positions `[0, start)`, the slice running to the canvas
  end: Fast-dLLM's prefix mode) or a full-length cache whose slice positions are ignored
  (dual mode). The cache is not modified.
  """
  return _forward(model, tokens, start, cache)[0]


def _shift(logits: torch.Tensor, before: torch.Tensor | None) -> torch.Tensor:
  """Dream's alignment of raw logits `[B, L, V]`: position i gets the output of i - 1. The
  first position gets `before [B, V]` (the position before a cached slice), or its own
  output when None (a whole canvas starting at position 0)."""
  first = logits[:, :1] if before is None else before[:, None]
  return torch.cat([first, logits[:, :-1]], dim=1)


def _as_long(value: Any, device: torch.device) -> torch.Tensor:
  tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
  return tensor.to(device=device, dtype=torch.long)


def _transfer_index(logits: torch.Tensor, eligible: torch.Tensor, current: torch.Tensor,
                    num_transfer: torch.Tensor | None, threshold: float | None, mask_id: int,
                    mask_is_candidate: bool) -> tuple[torch.Tensor, torch.Tensor]:
  """Fast-dLLM's `get_transfer_index` at temperature 0: `(x0, transfer [B, L] bool)`.

  `eligible` marks the masked positions that may be committed; `num_transfer [B]` is the
  fixed schedule's count (None in threshold mode, where every eligible position is ranked
  and all but the top-1 need `confidence >= threshold`).
  """
  candidate_logits = logits
  if not mask_is_candidate:
    candidate_logits = logits.clone()
    candidate_logits[..., mask_id] = -torch.inf
  x0 = candidate_logits.argmax(dim=-1)
  probs = torch.softmax(logits.to(torch.float64), dim=-1)
  x0_p = probs.gather(-1, x0[..., None])[..., 0]
  x0 = torch.where(eligible, x0, current)
  confidence = torch.where(eligible, x0_p, torch.tensor(-torch.inf, dtype=torch.float64,
                                                        device=x0_p.device))
  transfer = torch.zeros_like(eligible)
  for row in range(confidence.shape[0]):
    k = int(eligible[row].sum()) if threshold is not None else int(num_transfer[row])
    _, chosen = torch.topk(confidence[row], k=k)
    transfer[row, chosen] = True
    if threshold is not None:
      rest = chosen[1:]  # topk is sorted: chosen[0] is the top-1, always kept
      transfer[row, rest[confidence[row, rest] < threshold]] = False
  return x0, transfer


def _drift(fresh: KVCache, full_kv: KVCache, start: int, first_layer: int) -> torch.Tensor:
  """`[B]` the largest, over layers from `first_layer` on, relative L2 change of a slice's
  fresh keys and values (positions from `start`) against the last full forward's."""
  worst = None
  for (k, v), (old_k, old_v) in list(zip(fresh, full_kv, strict=True))[first_layer:]:
    length = k.shape[2]
    old_k, old_v = old_k[:, :, start:start + length], old_v[:, :, start:start + length]
    change = (k - old_k).pow(2).sum(dim=(1, 2, 3)) + (v - old_v).pow(2).sum(dim=(1, 2, 3))
    size = old_k.pow(2).sum(dim=(1, 2, 3)) + old_v.pow(2).sum(dim=(1, 2, 3))
    ratio = (change / size).sqrt()
    worst = ratio if worst is None else torch.maximum(worst, ratio)
  return worst


def _vicinity(model: TorchLLaDA, x: torch.Tensor, kv: KVCache, full_kv: KVCache,
              outputs: torch.Tensor | None, cache: str, lo: int, block_start: int,
              block_end: int) -> tuple[torch.Tensor, KVCache, KVCache, torch.Tensor | None]:
  """The vicinity block start: a cached forward of `[lo, block_end)` (prefix: `[lo, T)`),
  whose keys/values replace the cache's there. Returns the block's logits (prefix: from the
  block to the end), the attended cache, the drift's reference cache and Dream's outputs
  (`outputs` is None for a model whose logits are not shifted)."""
  end = x.shape[1] if cache == "prefix" else block_end
  logits, fresh, out = _forward(model, x[:, lo:end], lo, kv)
  if outputs is not None:  # Dream: the slice's first position reads the output before it
    logits = _shift(logits, _head(model, outputs[:, lo - 1]))
    outputs = torch.cat([outputs[:, :lo], out, outputs[:, end:]], dim=1)
  put = lambda old, new: torch.cat([old[:, :, :lo], new, old[:, :, end:]], dim=2)
  full_kv = [(put(k, nk), put(v, nv)) for (k, v), (nk, nv) in zip(full_kv, fresh, strict=True)]
  if cache == "prefix":
    kv = [(k[:, :, :block_start], v[:, :, :block_start]) for k, v in full_kv]
  else:
    kv = full_kv
  return logits[:, block_start - lo:], kv, full_kv, outputs


@torch.inference_mode()
def torch_fastdllm_generate(
    model: TorchLLaDA, prompt: np.ndarray | torch.Tensor, *, steps: int, gen_length: int,
    block_length: int, mask_id: int, cache: str, threshold: float | None = None,
    temperature: float = 0.0, refresh_every: int | None = None, mask_is_candidate: bool = True,
    refresh_threshold: float | None = None, refresh_from_layer: int = 0, vicinity: bool = False,
) -> tuple[np.ndarray, int]:
  """Fast-dLLM's `generate_with_prefix_cache` / `generate_with_dual_cache`, batched.

  `prompt [B, P]` int without padding; returns `(tokens [B, P + gen_length] int64, nfe)`.
  `cache` is "prefix" or "dual"; `threshold=None` is the fixed-step low-confidence schedule,
  a float Fast-dLLM's confidence-threshold parallel decoding. `refresh_every` (our extension)
  makes every `refresh_every`-th step of a block a full, cache-refreshing forward;
  `mask_is_candidate=False` keeps the mask token out of the argmax (this project's
  deviation; Fast-dLLM's default is True). A Dream model decodes with shifted logits
  (module docstring, "Dream mode"). `refresh_threshold`, `refresh_from_layer` and `vicinity`:
  the adaptive refresh and the vicinity block start (module docstring, our extension).
  Semantics and corner cases: module docstring.
  """
  if temperature != 0:
    raise ValueError(f"only temperature 0 (argmax) is ported, got {temperature}.")
  if cache not in CACHE_MODES:
    raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}.")
  if block_length <= 0 or gen_length % block_length:
    raise ValueError(f"gen_length ({gen_length}) must be a multiple of block_length "
                     f"({block_length}).")
  num_blocks = gen_length // block_length
  if steps <= 0 or steps % num_blocks:
    raise ValueError(f"steps ({steps}) must be a positive multiple of the number of blocks "
                     f"({num_blocks}).")
  steps_per_block = steps // num_blocks
  if threshold is None and steps_per_block < 2:
    raise ValueError(
        "fixed-step mode needs at least 2 steps per block: Fast-dLLM always runs a cached "
        "step after the block-start step and reads num_transfer_tokens[:, 1] (IndexError).")
  if refresh_every is not None and refresh_every < 1:
    raise ValueError(f"refresh_every must be None or >= 1, got {refresh_every}.")
  if refresh_threshold is not None and refresh_every is not None:
    raise ValueError("give refresh_every or refresh_threshold, not both.")

  device = model.device
  prompt = _as_long(prompt, device)
  batch, prompt_length = prompt.shape
  total = prompt_length + gen_length
  x = torch.full((batch, total), mask_id, dtype=torch.long, device=device)
  x[:, :prompt_length] = prompt
  # A stall of this many forwards with an unchanged canvas repeats forever (threshold mode).
  stall_limit = 2 * (refresh_every or 2)
  nfe = 0
  kv: KVCache = []
  full_kv: KVCache = []  # every position's keys/values as of the last full forward
  shifted = model.config.architecture == "dream"
  outputs = None  # Dream: every position's last-layer output at the last full forward

  def full_forward(block_start):
    logits, fresh, out = _forward(model, x, 0, None)
    if shifted:
      logits = _shift(logits, None)
    attended = fresh if cache == "dual" else [(k[:, :, :block_start], v[:, :, :block_start])
                                              for k, v in fresh]
    return logits, attended, fresh, out

  for block in range(num_blocks):
    block_start = prompt_length + block * block_length
    block_end = block_start + block_length
    schedule = get_num_transfer_tokens(x[:, block_start:block_end] == mask_id, steps_per_block)
    step = 0
    stalled = 0
    while True:
      if threshold is None and step >= steps_per_block:
        raise RuntimeError(
            f"block {block} still has mask tokens after its {steps_per_block} scheduled steps "
            "(the mask token was committed as a candidate); Fast-dLLM raises IndexError here.")
      is_full = step == 0 or (refresh_every is not None and step % refresh_every == 0)
      if step == 0 and vicinity and block > 0:
        logits, kv, full_kv, outputs = _vicinity(model, x, kv, full_kv,
                                                 outputs if shifted else None, cache,
                                                 block_start - block_length, block_start,
                                                 block_end)
        window_start, window_end = block_start, total if cache == "prefix" else block_end
      elif is_full:
        logits, kv, full_kv, outputs = full_forward(block_start)
        window_start, window_end = 0, total
      else:
        window_start = block_start
        window_end = total if cache == "prefix" else block_end
        logits, fresh, _ = _forward(model, x[:, window_start:window_end], window_start, kv)
        if shifted:  # the slice's first position reads the cached output before it
          logits = _shift(logits, _head(model, outputs[:, window_start - 1]))
        if refresh_threshold is not None:
          drift = _drift(fresh, full_kv, window_start, refresh_from_layer)
          still = (x[:, block_start:block_end] == mask_id).any(dim=1)
          due = still & (drift > refresh_threshold)
          if bool(due.any()):
            nfe += 1
            new_logits, new_kv, new_full, new_outputs = full_forward(block_start)
            logits = torch.where(due[:, None, None],
                                 new_logits[:, window_start:window_end], logits)
            pick = lambda new, old, due=due: torch.where(due[:, None, None, None], new, old)
            kv = [(pick(nk, k), pick(nv, v)) for (nk, nv), (k, v) in zip(new_kv, kv, strict=True)]
            full_kv = [(pick(nk, k), pick(nv, v))
                       for (nk, nv), (k, v) in zip(new_full, full_kv, strict=True)]
            if shifted:
              outputs = torch.where(due[:, None, None], new_outputs, outputs)
      nfe += 1
      window = x[:, window_start:window_end]  # a view: commits below write into x
      eligible = window == mask_id
      eligible[:, block_end - window_start:] = False
      if step > 0:  # a refresh replaces a cached step: the current block only
        eligible[:, :block_start - window_start] = False
      masked_before = int((x[:, block_start:block_end] == mask_id).sum())
      x0, transfer = _transfer_index(
          logits, eligible, window, None if threshold is not None else schedule[:, step],
          threshold, mask_id, mask_is_candidate)
      window[transfer] = x0[transfer]
      masked_after = int((x[:, block_start:block_end] == mask_id).sum())
      stalled = stalled + 1 if masked_after == masked_before else 0
      if step > 0 and masked_after == 0:  # Fast-dLLM tests this only after a cached step
        break
      if threshold is not None and stalled >= stall_limit:
        raise RuntimeError(
            f"block {block}: {stalled} forwards without unmasking a position (the remaining "
            "positions predict the mask token); Fast-dLLM would loop forever.")
      step += 1
  return x.cpu().numpy().astype(np.int64), nfe

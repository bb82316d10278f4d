"""A plain numpy decode loop for one unpadded prompt: an eager reference for per-step rules.

Written from the documented contracts (the loop's module docstring, `SamplerConfig.cache`
and `testing.noise`), not from `loop.py`: blocks left to right; each block opens with a full
forward (storing the KV cache under a cache mode); each step the rule picks positions of
the block from the block's logits, they are committed, and the next forward runs unless the
block is done. Under a cache the step forward is the block against the cached rest ("dual")
or the response from the block on against the cached prompt and finished blocks ("prefix"),
called through the model's own `prefill` / `extend`. The rule sees float64 numpy arrays.
NFE counts the forwards made. Rows are run alone, unpadded: comparing a padded batch with
them checks batch and padding invariance too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx


@dataclasses.dataclass
class StepInput:
  """What a reference rule sees at one step of a block (B = block length).

  Attributes:
    logits: `[B, V]` float64 logits of the block's positions.
    log_probs: `[B, V]` float64 log-softmax of `logits`.
    candidates: `[B]` argmax of the (Gumbel-noised) logits, the mask token excluded.
    confidence: `[B]` softmax probability of each candidate (clean logits).
    masked: `[B]` positions of the block still masked.
    step_in_block: steps this block has taken before this one.
    progress: fraction of the response committed before this step.
    memory: a dict the rule may keep for the block (empty at each block's first step).
  """

  logits: np.ndarray
  log_probs: np.ndarray
  candidates: np.ndarray
  confidence: np.ndarray
  masked: np.ndarray
  step_in_block: int
  progress: float
  memory: dict[str, Any]


Rule = Callable[[StepInput], np.ndarray]


def log_softmax(logits: np.ndarray) -> np.ndarray:
  logits = logits.astype(np.float64)
  top = np.max(logits, axis=-1, keepdims=True)
  return logits - top - np.log(np.sum(np.exp(logits - top), axis=-1, keepdims=True))


@nnx.jit
def _full(model: Any, canvas: jax.Array) -> jax.Array:
  return model(canvas)


@nnx.jit
def _prefill(model: Any, canvas: jax.Array) -> tuple[jax.Array, Any]:
  return model.prefill(canvas)


@functools.partial(nnx.jit, static_argnames=("length",))
def _extend(model: Any, tokens: jax.Array, cache: Any, start: jax.Array, offset: jax.Array,
            fresh_from: jax.Array, *, length: int) -> jax.Array:
  return model.extend(tokens, start, cache, logits_window=(offset, length),
                      fresh_from=fresh_from)


class BlockForward:
  """The model's logits of one block `[block, V]` as a cache mode computes them (each model
  call jitted on its own: one compile per shape instead of one per op)."""

  def __init__(self, model: Any, cache: str, prompt_length: int, block_length: int):
    self.model, self.cache_mode = model, cache
    self.p, self.block = prompt_length, block_length
    self.kv = None

  def start(self, canvas: np.ndarray, block: int) -> np.ndarray:
    """A block's first forward: the whole canvas (and, cached, every position's keys/values)."""
    lo = self.p + block * self.block
    if self.cache_mode == "none":
      logits = _full(self.model, canvas[None])
    else:
      logits, self.kv = _prefill(self.model, canvas[None])
    return np.asarray(logits)[0, lo:lo + self.block]

  def step(self, canvas: np.ndarray, block: int) -> np.ndarray:
    """A step's forward after a commit."""
    if self.cache_mode == "none":
      return self.start(canvas, block)
    offset = block * self.block
    if self.cache_mode == "dual":
      lo = self.p + offset
      logits = _extend(self.model, canvas[None, None, lo:lo + self.block], self.kv, lo, 0, lo,
                       length=self.block)
    else:  # prefix: the response from the block on is fresh, the rest cached
      logits = _extend(self.model, canvas[None, None, self.p:], self.kv, self.p, offset,
                       self.p + offset, length=self.block)
    return np.asarray(logits)[0, 0]


def reference_decode(model: Any, prompt: np.ndarray, rule: Rule, *, gen_length: int,
                     block_length: int, cache: str, mask_token_id: int,
                     temperature: float = 0.0, uniforms: np.ndarray | None = None
                     ) -> tuple[np.ndarray, int, int]:
  """Decodes one prompt `[P]` with `rule`; returns (tokens `[P + G]`, NFE, steps).

  Args:
    rule: `rule(StepInput) -> commit [block]` bool (the driver keeps it to masked positions;
      the rule must pick at least one).
    uniforms: with temperature > 0, the row's Gumbel uniforms `[steps, G, V]`, indexed by the
      row's own step count and the response position (`testing.gumbel_uniforms`).
  """
  prompt = np.asarray(prompt, np.int32)
  p = prompt.shape[0]
  canvas = np.concatenate([prompt, np.full(gen_length, mask_token_id, np.int32)])
  forward = BlockForward(model, cache, p, block_length)
  nfe = steps = 0
  for block in range(gen_length // block_length):
    lo = p + block * block_length
    logits = forward.start(canvas, block).astype(np.float64)
    nfe += 1
    memory: dict[str, Any] = {}
    step_in_block = 0
    while np.any(canvas[lo:lo + block_length] == mask_token_id):
      masked = canvas[lo:lo + block_length] == mask_token_id
      log_probs = log_softmax(logits)
      noised = logits.copy()
      noised[:, mask_token_id] = -np.inf
      if temperature > 0:
        u = uniforms[steps, block * block_length:(block + 1) * block_length].astype(np.float64)
        noised = noised - temperature * np.log(-np.log(u))
      candidates = np.argmax(noised, axis=-1)
      confidence = np.exp(log_probs[np.arange(block_length), candidates])
      progress = float(np.mean(canvas[p:] != mask_token_id))
      commit = np.asarray(rule(StepInput(logits, log_probs, candidates, confidence, masked,
                                         step_in_block, progress, memory)), bool) & masked
      assert commit.any(), "a reference rule must commit at least one masked position"
      window = canvas[lo:lo + block_length]
      window[commit] = candidates[commit]
      steps += 1
      step_in_block += 1
      if np.any(canvas[lo:lo + block_length] == mask_token_id):
        logits = forward.step(canvas, block).astype(np.float64)
        nfe += 1
  return canvas, nfe, steps


def top_confident(confidence: np.ndarray, masked: np.ndarray, k: int) -> np.ndarray:
  """`[B]` the `k` most confident masked positions (ties to the lower index)."""
  order = np.argsort(-np.where(masked, confidence, -np.inf), kind="stable")
  commit = np.zeros(masked.shape, bool)
  commit[order[:k]] = True
  return commit & masked

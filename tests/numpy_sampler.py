"""An eager numpy sampler for reference tests: the model forward over the whole canvas before
every step, candidates and confidences in float64 numpy, and a strategy's rule as a plain
function choosing the positions to commit. Nothing of the jitted loop is reused but the
model itself and the documented noise contract (`lookum_jax.testing.noise`).

A row is decoded alone (its own key, as the loop keys rows), blocks left to right; a block
lasts until its positions are committed. Its NFE is the forwards it ran: one per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from helpers import forward

from lookum_jax.testing import gumbel_uniforms

# rule(step_in_block, candidates [G], confidence [G], eligible [G]) -> commit [G] bool
Rule = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def decode_rows(model: Any, prompts: np.ndarray, key: jax.Array, *, gen_length: int,
                block_length: int, temperature: float, rule: Rule, max_steps: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(tokens `[B, P + G]`, nfe `[B]`, unmask_order `[B, G]`) of every row of `prompts`,
  each decoded alone; `max_steps` bounds the steps a row may take (for its noise draws)."""
  config = model.config
  batch, prompt_length = prompts.shape
  uniforms = (gumbel_uniforms(key, batch, max_steps, gen_length, config.vocab_size)
              if temperature > 0 else None)
  tokens, nfes, orders = [], [], []
  for row in range(batch):
    canvas = np.concatenate([prompts[row], np.full(gen_length, config.mask_token_id)])
    order = np.full(gen_length, -1)
    step = nfe = 0
    for start in range(0, gen_length, block_length):
      in_block = np.zeros(gen_length, bool)
      in_block[start:start + block_length] = True
      step_in_block = 0
      while np.any((order < 0) & in_block):
        logits = np.asarray(forward(model, canvas[None].astype(np.int32)), np.float64)
        logits = logits[0, prompt_length:]
        nfe += 1
        logits[:, config.mask_token_id] = -np.inf
        noisy = logits
        if uniforms is not None:
          noisy = logits - temperature * np.log(-np.log(uniforms[step, row].astype(np.float64)))
        candidates = np.argmax(noisy, axis=-1)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        confidence = probs[np.arange(gen_length), candidates]
        eligible = (order < 0) & in_block
        commit = rule(step_in_block, candidates, confidence, eligible)
        assert np.any(commit) and not np.any(commit & ~eligible)
        canvas[prompt_length:][commit] = candidates[commit]
        order[commit] = step
        step += 1
        step_in_block += 1
    tokens.append(canvas)
    nfes.append(nfe)
    orders.append(order)
  return np.stack(tokens), np.asarray(nfes), np.stack(orders)


def top_k(score: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
  """The `k` highest-scoring eligible positions (ties to the lower index)."""
  order = np.argsort(np.where(eligible, -score, np.inf), kind="stable")
  commit = np.zeros(score.shape, bool)
  commit[order[:min(k, int(eligible.sum()))]] = True
  return commit


def llada_counts(block_length: int, steps_per_block: int) -> list[int]:
  """LLaDA's commit count per step of a block: `m // s` each, one more for the first
  `m % s` steps."""
  base, extra = divmod(block_length, steps_per_block)
  return [base + (i < extra) for i in range(steps_per_block)]


def padded(row: np.ndarray, length: int, pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
  """`row` left-padded to `length`: (ids, attention mask)."""
  pad = length - row.shape[0]
  ids = np.concatenate([np.full(pad, pad_token_id), row]).astype(np.int32)
  return ids, np.arange(length) >= pad

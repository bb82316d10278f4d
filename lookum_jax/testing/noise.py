"""LLaDA sampling noise drawn in JAX exactly as the sampling loop draws it.

Written from the documented contract (not from the loop's code), so a reference sampler
in another framework can consume the same randomness and a test can compare tokens:

  row_key = fold_in(key, row)              (or the row's own key when `[B]` keys are given)
  noise_key, select_key = split(fold_in(row_key, step))   step: the row's own step count
  u[j] = uniform(fold_in(noise_key, j), [V], minval=tiny)   Gumbel noise of response position j
  score[j] = uniform(fold_in(select_key, j), [])            remasking="random" scores

Draws are keyed on response positions j (0 = first response token), so they depend neither on
prompt padding nor on which window of the response a step computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def row_keys(key: jax.Array, batch_size: int) -> jax.Array:
  """`[B]` typed keys: `fold_in(key, row)` from one key, or the given `[B]` keys."""
  if key.ndim == 0:
    return jnp.stack([jax.random.fold_in(key, row) for row in range(batch_size)])
  if key.shape != (batch_size,):
    raise ValueError(f"expected one key or {batch_size} keys, got shape {key.shape}.")
  return key


def step_keys(key: jax.Array, row: int, step: int, batch_size: int
              ) -> tuple[jax.Array, jax.Array]:
  """(noise key, select key) of one row at its `step`-th step."""
  noise_key, select_key = jax.random.split(
      jax.random.fold_in(row_keys(key, batch_size)[row], step))
  return noise_key, select_key


@jax.jit
def _per_position(key: jax.Array, positions: jax.Array, minval: jax.Array,
                  template: jax.Array) -> jax.Array:
  """`uniform(fold_in(key, j), template.shape, minval=minval)` for each j of `positions`."""
  return jnp.stack([jax.random.uniform(jax.random.fold_in(key, j), template.shape, jnp.float32,
                                       minval=minval) for j in positions])


def _position_draws(key: jax.Array, gen_length: int, shape: tuple[int, ...], minval: float
                    ) -> np.ndarray:
  return np.asarray(_per_position(key, tuple(range(gen_length)), jnp.float32(minval),
                                  jnp.zeros(shape, jnp.float32)))


def gumbel_uniforms(key: jax.Array, batch_size: int, num_steps: int, gen_length: int,
                    vocab_size: int) -> np.ndarray:
  """`[num_steps, B, gen_length, V]` float32 uniforms behind the Gumbel noise."""
  tiny = float(jnp.finfo(jnp.float32).tiny)
  return np.stack([np.stack([
      _position_draws(step_keys(key, row, step, batch_size)[0], gen_length, (vocab_size,), tiny)
      for row in range(batch_size)]) for step in range(num_steps)])


def random_scores(key: jax.Array, batch_size: int, num_steps: int, gen_length: int
                  ) -> np.ndarray:
  """`[num_steps, B, gen_length]` float32 scores of remasking="random"."""
  return np.stack([np.stack([
      _position_draws(step_keys(key, row, step, batch_size)[1], gen_length, (), 0.0)
      for row in range(batch_size)]) for step in range(num_steps)])

"""Per-position quantities from logits, in float32: candidates, confidence, margin, entropy."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def position_uniform(key: jax.Array, positions: jax.Array, shape: tuple[int, ...] = (),
                     minval: float = 0.0) -> jax.Array:
  """Uniforms `[W, *shape]`, one independent draw per response position: position j's draw is
  `uniform(fold_in(key, j), shape)`, so it does not depend on which window it is drawn in."""
  return jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(key, j), shape, jnp.float32,
                                               minval=minval))(positions)


def gumbel_argmax(logits: jax.Array, temperature: float, key: jax.Array | None,
                  positions: jax.Array | None = None,
                  banned_token: int | None = None) -> jax.Array:
  """Candidate tokens `[W]` of logits `[W, V]`: argmax with Gumbel noise.

  LLaDA's reference draws `u ~ U(0, 1)` and takes `argmax exp(l) / (-log u) ** temperature`
  in float64; we take the same argmax in log space, `l - temperature * log(-log u)`,
  which needs no float64 and cannot overflow. A concrete `temperature` of 0 is plain argmax
  (a traced one always draws the noise, scaled by it). The
  uniforms of response position j are `position_uniform(key, positions)` (needs
  `positions [W]`). `banned_token` (the mask token) is never a candidate: a committed
  position must hold a real token.
  """
  logits = logits.astype(jnp.float32)
  if banned_token is not None:
    logits = logits.at[..., banned_token].set(NEG_INF)
  if not (isinstance(temperature, (int, float)) and temperature <= 0):
    u = position_uniform(key, positions, logits.shape[-1:], jnp.finfo(jnp.float32).tiny)
    logits = logits - temperature * jnp.log(-jnp.log(u))
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def log_odds(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """`log p - log(1 - p)` of each token under softmax(logits), computed as the token's logit
  minus the log-sum-exp of every other logit: exact where p rounds to 1.0 in float32, so
  near-certain positions still rank apart (ties would fall to the lower index)."""
  logits = logits.astype(jnp.float32)
  chosen = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
  others = jnp.where(jax.nn.one_hot(tokens, logits.shape[-1], dtype=bool), NEG_INF, logits)
  return chosen - jax.nn.logsumexp(others, axis=-1)


def token_probability(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """softmax(logits)[tokens]: the model's probability of each candidate token."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.exp(jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0])


def top1_probability(logits: jax.Array) -> jax.Array:
  """Largest softmax probability per position."""
  return jnp.max(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def margin(logits: jax.Array) -> jax.Array:
  """Top-1 minus top-2 softmax probability per position."""
  top2 = jax.lax.top_k(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), 2)[0]
  return top2[..., 0] - top2[..., 1]


def entropy(logits: jax.Array) -> jax.Array:
  """Shannon entropy (nats) of the predictive distribution per position."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  p = jnp.exp(logp)
  # Tokens banned with -inf logits contribute 0 (not 0 * -inf = nan).
  return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)


# The per-position statistics a step view offers (`types.StepView`), each a function of the
# logits `[..., W, V]` and the candidate tokens `[..., W]`. A strategy names the ones it reads
# (`Strategy.reads`); the loop computes only those, once per forward.
STATISTICS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "confidence": token_probability,
    "certainty": log_odds,
    "entropy": lambda logits, tokens: entropy(logits),
    "margin": lambda logits, tokens: margin(logits),
}

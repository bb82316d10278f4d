"""What the unmasking policy observes at each denoising step, computed from the dLLM's logits.

Per position: the model's confidence in its prediction (top-1 probability; optionally the
top-1/top-2 margin and the predictive entropy, for ablations) and whether the position is
still masked; per sequence: the time `t = steps taken / gen_length`. Token features enter the
policy through a linear projection; the mask flag and the time condition its block (adaLN).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.sampling import scores

# Per-position scalar features the policy can take as input, in the order given by the user.
TOKEN_FEATURES = ("confidence", "margin", "entropy")
DEFAULT_FEATURES = ("confidence",)


@struct.dataclass
class PolicyInput:
  """The policy's observation of one step.

  Attributes:
    token_features: `[B, T, F]` float32, one column per name of the feature set.
    masked: `[B, T]` bool, positions still masked (prompt and committed positions false).
    time: `[B]` float32, denoising steps taken so far / gen_length.
  """

  token_features: jax.Array
  masked: jax.Array
  time: jax.Array


def validate_features(features: Sequence[str], owner: str = "features") -> tuple[str, ...]:
  """Checks a feature set (non-empty, known names, no repeats) and returns it as a tuple."""
  if isinstance(features, str) or not isinstance(features, Sequence):
    raise ValueError(
        f"{owner} must be a sequence of feature names from {TOKEN_FEATURES}, got {features!r}.")
  features = tuple(features)
  unknown = [f for f in features if f not in TOKEN_FEATURES]
  if not features or unknown:
    raise ValueError(
        f"{owner} must be a non-empty subset of {TOKEN_FEATURES}, got {features!r}"
        + (f" (unknown: {unknown})." if unknown else "."))
  if len(set(features)) != len(features):
    raise ValueError(f"{owner} lists a feature twice: {features!r}.")
  return features


def compute_features(features: tuple[str, ...], logits: jax.Array, masked: jax.Array,
                     num_steps: jax.Array, gen_length: int,
                     banned_token: int | None = None) -> PolicyInput:
  """The policy input of a step.

  Args:
    features: names from `TOKEN_FEATURES` (static).
    logits: `[B, T, V]` the dLLM's logits for the current canvas.
    masked: `[B, T]` positions still masked.
    num_steps: `[B]` denoising steps already taken.
    gen_length: response length L.
    banned_token: a token never committed (the mask token): confidence and margin are the
      probabilities of the best real tokens (under the full softmax), i.e. at temperature 0
      the probability of the token the sampler would commit.
  """
  return policy_input(token_features(features, logits, banned_token), masked, num_steps,
                      gen_length)


def token_features(features: tuple[str, ...], logits: jax.Array,
                   banned_token: int | None = None) -> jax.Array:
  """`[..., T, F]` float32 per-position features of logits `[..., T, V]`, one column per name
  of `features` (see `compute_features`). The sampling loop computes them right after each
  forward (`Policy.observe`), so the logits are not carried to the step."""
  logits = logits.astype(jnp.float32)
  log_norm = jax.nn.logsumexp(logits, axis=-1)
  real = logits if banned_token is None else logits.at[..., banned_token].set(-jnp.inf)
  columns = []
  for name in features:
    if name == "confidence":
      columns.append(jnp.exp(jnp.max(real, axis=-1) - log_norm))
    elif name == "margin":
      top2 = jnp.exp(jax.lax.top_k(real, 2)[0] - log_norm[..., None])
      columns.append(top2[..., 0] - top2[..., 1])
    elif name == "entropy":
      columns.append(scores.entropy(logits))
    else:
      raise ValueError(f"unknown policy feature {name!r}; choose from {TOKEN_FEATURES}.")
  return jnp.stack(columns, axis=-1)


def policy_input(token_features: jax.Array, masked: jax.Array, num_steps: jax.Array,
                 gen_length: int) -> PolicyInput:
  """The policy input of a step from its token features `[B, T, F]` (`token_features`)."""
  return PolicyInput(
      token_features=token_features,
      masked=masked.astype(bool),
      time=num_steps.astype(jnp.float32) / gen_length)

"""PC-Sampler: position-aware, calibrated confidence (Huang et al. 2025, "PC-Sampler:
Position-Aware Calibration of Decoding Bias in Masked Diffusion Models", arXiv:2508.13021).

The token-frequency prior it calibrates against is a `[V]` array of token frequencies in a
reference corpus. Build one from token ids with `token_frequency_prior` and save it with
`save_prior`; for a toy model, the corpus is its task's training answers
(`lookum_jax.tasks.corpus.answer_token_ids`), and `experiments/token_prior.py --model
toy-chain --out prior.npy` does it all. `PCSampler(prior="prior.npy")`, or
`--param prior=prior.npy` at the command line, loads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lookum_jax.sampling.strategies.base import check_number, pytree_dataclass
from lookum_jax.sampling.strategies.rules import Rule
from lookum_jax.sampling.types import StepContext, StepView

# Added to the prior before its log, as the authors' code does: a zero frequency stays finite.
PRIOR_EPSILON = 1e-9


def token_frequency_prior(sequences: Iterable[Iterable[int]] | np.ndarray,
                          vocab_size: int) -> np.ndarray:
  """The `[vocab_size]` float32 frequency of each token id in `sequences` (any iterable of
  token-id sequences, or one array of ids).

  A token's frequency is its count over the total count; a token that never occurs counts
  as if seen once (the authors' code gives unseen tokens `1 / total`), so its surprisal is
  large but finite. The result therefore sums to slightly more than 1 when tokens are unseen.

  Raises:
    ValueError: for an empty corpus or an id outside `[0, vocab_size)`.
  """
  if not isinstance(vocab_size, int) or vocab_size <= 0:
    raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}.")
  if isinstance(sequences, np.ndarray):
    ids = sequences.reshape(-1)
  else:
    ids = np.concatenate([np.asarray(list(s), np.int64).reshape(-1) for s in sequences] or
                         [np.zeros((0,), np.int64)])
  if ids.size == 0:
    raise ValueError("the corpus holds no token ids; give at least one sequence of ids.")
  ids = ids.astype(np.int64)
  if ids.min() < 0 or ids.max() >= vocab_size:
    bad = ids[(ids < 0) | (ids >= vocab_size)][0]
    raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab_size}); is the "
                     "corpus tokenized with the model's tokenizer?")
  counts = np.bincount(ids, minlength=vocab_size)
  return (np.maximum(counts, 1) / ids.size).astype(np.float32)


def save_prior(path: str | os.PathLike, prior: np.ndarray) -> None:
  """Writes a prior (`[V]` frequencies) as a `.npy` file, after `check_prior`."""
  np.save(path, check_prior(prior))


def load_prior(path: str | os.PathLike) -> np.ndarray:
  """The `[V]` prior saved at `path` (a `.npy` file of frequencies), checked."""
  try:
    prior = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise ValueError(
        f"pc_sampler prior file {str(path)!r} does not exist; build one with "
        "experiments/token_prior.py (or token_frequency_prior + save_prior).") from None
  except ValueError as e:
    raise ValueError(f"pc_sampler prior file {str(path)!r} is not a .npy array ({e}); save "
                     "the prior with numpy.save or save_prior.") from None
  return check_prior(prior, f"pc_sampler prior {str(path)!r}")


def check_prior(prior: Any, what: str = "pc_sampler prior") -> np.ndarray:
  """`prior` as a float32 `[V]` array; raises ValueError unless it is 1-D, non-empty,
  finite and in [0, 1]."""
  array = np.asarray(prior)
  if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
    raise ValueError(f"{what} must be a 1-D array of token frequencies [vocab_size], got "
                     f"{array.dtype} {array.shape}.")
  array = array.astype(np.float32)
  if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
    raise ValueError(f"{what} must hold frequencies in [0, 1] (counts / total), got values in "
                     f"[{array.min()}, {array.max()}]; normalise counts with "
                     "token_frequency_prior.")
  return array


def _describe(prior: np.ndarray) -> str:
  digest = hashlib.sha256(np.ascontiguousarray(prior, np.float32).tobytes()).hexdigest()[:12]
  return f"<array [{prior.shape[0]}] sha256:{digest}>"


@pytree_dataclass
class PCSampler(Rule):
  """PC-Sampler (Huang et al. 2025, arXiv:2508.13021): commit the scheduled number of
  eligible positions with the highest position-aware, calibrated confidence

      score_i = exp(-decay * i) * min(p_i * -log(prior[x_i] + 1e-9), clip)

  where `x_i` is position i's candidate, `p_i` its probability, and `i` its response index
  (0 = first response token; the paper's `i - |p_0|`). The position weight steers the order
  (larger `decay`, more left to right); the calibration multiplies the confidence by the
  candidate's surprisal under a token-frequency prior, so frequent, trivial tokens (EOS,
  punctuation) rank below informative ones of the same confidence; the clip keeps rare
  tokens from dominating. The count per step is LLaDA's schedule (`steps`).

  Readings where the sources differ: the paper's algorithm writes `p * log prior` under a
  clip at a positive alpha, which only makes sense for the positive `-p * log prior` the
  authors' code computes, so we take that sign. The authors' code counts `i` from the
  current block's start, the paper from the response's start; inside a block the two rank
  identically (they differ by a common factor), and we rank in log space
  (`min(log p + log(-log prior), log clip) - decay * i`), which does not underflow at long
  responses.

  Attributes:
    decay: lambda, the position weight's decay rate, >= 0 (0: no positional bias). The
      authors recommend 0.25 for most tasks, 0 for Sudoku, 0.5 for Countdown.
    clip: alpha, the calibrated confidence's upper clip, > 0 (authors: 10).
    prior: `[V]` token frequencies of a reference corpus, a traced leaf (a new prior of the
      same vocabulary reuses the compiled program), or a path to a `.npy` file of them. None
      (the default) turns calibration off: the salience is the confidence itself, so with
      `decay=0` the rule is LLaDA's low-confidence rule. (A uniform prior is not the same:
      it scales every salience by `log V`, which then meets the clip.) Its length must be
      the model's vocabulary size, checked before decoding.
  """

  name = "pc_sampler"
  decay: float = 0.25
  clip: float = 10.0
  prior: Any = dataclasses.field(default=None, repr=False, compare=False)

  def __post_init__(self):
    check_number("pc_sampler", "decay", self.decay, lambda v: v >= 0,
                 ">= 0 (0 = no positional bias; the authors use 0.25)")
    check_number("pc_sampler", "clip", self.clip, lambda v: v > 0, "> 0 (the authors use 10)")
    prior, source = self.prior, None
    if isinstance(prior, (str, os.PathLike)):
      source = os.fspath(prior)
      prior = load_prior(prior)
    if prior is not None and not isinstance(prior, jax.core.Tracer):
      prior = jnp.asarray(check_prior(prior))
      source = source or _describe(np.asarray(prior))
    object.__setattr__(self, "prior", prior)
    # Where the prior came from, for records; not part of the pytree (a traced copy of the
    # value has none, and needs none).
    object.__setattr__(self, "_prior_source", source)

  def to_dict(self) -> dict[str, Any]:
    """The parameters; the prior as the path it was loaded from (else a digest)."""
    return {"decay": self.decay, "clip": self.clip,
            "prior": getattr(self, "_prior_source", None)}

  @classmethod
  def from_params(cls, params: dict[str, Any]) -> PCSampler:
    prior = params.get("prior")
    if isinstance(prior, str) and prior.startswith("<array"):
      raise ValueError(f"pc_sampler prior {prior} was given as an array and cannot be rebuilt "
                       "from its record; pass prior=PATH.npy (see save_prior).")
    return cls(**params)

  def salience(self, view: StepView) -> jax.Array:
    """`[W]` log of the calibrated confidence before the clip: `log p`, plus the log of the
    candidate's surprisal `-log(prior[x] + 1e-9)` when a prior is given."""
    log_p = jax.nn.log_sigmoid(view.certainty)  # log p, exact near p = 1
    if self.prior is None:
      return log_p
    surprisal = -jnp.log(self.prior[view.candidates] + PRIOR_EPSILON)
    return log_p + jnp.log(jnp.maximum(surprisal, 0.0))

  def score(self, view: StepView) -> jax.Array:
    """`[W]` log of the PC-Sampler score (same ranking as the score itself)."""
    clipped = jnp.minimum(self.salience(view), jnp.log(jnp.asarray(self.clip, jnp.float32)))
    return clipped - self.decay * view.positions.astype(jnp.float32)

  def proposal_log_score(self, view: StepView) -> jax.Array:
    return self.score(view)

  def init_state(self, ctx: StepContext, batch_size: int) -> None:
    """Checks, before any work, that the prior covers the model's vocabulary."""
    del batch_size
    if self.prior is not None:
      vocab = model_vocab_size(ctx)
      if self.prior.shape[0] != vocab:
        raise ValueError(
            f"pc_sampler prior has {self.prior.shape[0]} entries but the model's vocabulary "
            f"has {vocab} tokens; build the prior with the model's tokenizer "
            f"(token_frequency_prior(ids, vocab_size={vocab})).")
    return None


def model_vocab_size(ctx: StepContext) -> int:
  """The vocabulary size of the model's logits (shapes only, nothing is computed)."""
  total = ctx.prompt_length + ctx.config.gen_length
  shape = jax.eval_shape(lambda: ctx.forward.full(
      jnp.zeros((1, total), jnp.int32), None, ctx.prompt_length, 1)[0])
  return int(shape.shape[-1])

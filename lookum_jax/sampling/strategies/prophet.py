"""Prophet, early commit decoding (Li, Zhou, Muhtar, Yin, Yan, Shen, Liang, Vosoughi and Liu,
"Diffusion Language Models Know the Answer Before Decoding", arXiv:2508.19982; authors' code
github.com/pixeli99/Prophet)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lookum_jax.sampling.strategies.base import (
  Strategy,
  check_number,
  check_unit_interval,
  pytree_dataclass,
  static_field,
)
from lookum_jax.sampling.strategies.rules import LowConfidence, Rule
from lookum_jax.sampling.types import LoopState, StepContext, StepView, concrete


def min_gap(gap: jax.Array, watched: jax.Array) -> jax.Array:
  """The smallest gap of the watched positions (`[W]` -> `[]`)."""
  return jnp.min(jnp.where(watched, gap, jnp.inf))


def mean_gap(gap: jax.Array, watched: jax.Array) -> jax.Array:
  """The mean gap of the watched positions (`[W]` -> `[]`)."""
  return jnp.sum(jnp.where(watched, gap, 0.0)) / jnp.maximum(jnp.sum(watched), 1)


# `Prophet.reduce`'s names: how the remaining positions' gaps are combined.
REDUCTIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "min": min_gap, "mean": mean_gap}


def logit_gap(view: StepView) -> jax.Array:
  """`[W]` top-1 minus top-2 logit of each position (= the log-probability gap), the mask
  token excluded as it is never a candidate."""
  logits = view.logits.astype(jnp.float32)
  if view.mask_token_id is not None:
    logits = logits.at[..., view.mask_token_id].set(-jnp.inf)
  top2 = jax.lax.top_k(logits, 2)[0]
  return top2[..., 0] - top2[..., 1]


@pytree_dataclass
class Prophet(Strategy):
  """Early answer commit around a base rule: step as `base` until the model is sure enough of
  what is left, then commit all of it in one step.

  Each step, the gap of a position is its top-1 minus top-2 *logit* (a log-probability gap:
  the authors' default thresholds 7.5 / 5.0 / 2.5 are far above any probability gap). The
  step commits every eligible position at once when the gaps' `reduce` ("min": every one,
  the default; "mean": their average) reaches the stage's threshold; otherwise it is
  `base`'s step. Stages follow decoding progress, the fraction of the response committed
  before the step: `early` below `early_until`, `mid` below `mid_until`, `late` after.

  Readings where the paper and its code leave room:
    * Which positions. The authors' code averages the gap over a 5-token answer window that
      a forced "The answer is" prefix puts at a known place; a generic sampler has no answer
      window, so we watch every position left to commit, and by default require each to pass
      (an average would let confident padding outvote an undecided token).
    * Progress. The code measures it in steps (`step / steps`, which assumes a fixed
      schedule); we measure the committed fraction, which any base rule has. With one token
      a step they differ by one step.
    * The commit is of the current block's positions: a strategy commits within its block
      (`StepContext.commit`), and a cached step has no logits past it. Each later block
      opens with its own forward and is judged again (its progress is then further on). With
      full diffusion (one block) the early commit takes the whole remaining response, as in
      the paper.

  Attributes:
    base: the rule that steps until the early commit (any `Rule`; traced numbers).
    early, mid, late: gap thresholds (logits, >= 0) of the three stages (traced).
    early_until, mid_until: progress at which the early and the mid stage end (traced).
    reduce: "min" or "mean": how the remaining positions' gaps are combined (static; the
      name of a function in `REDUCTIONS`).
  """

  name = "prophet"
  needs_logits: ClassVar[bool] = True
  base: Rule = LowConfidence()
  early: float = 7.5
  mid: float = 5.0
  late: float = 2.5
  early_until: float = 0.33
  mid_until: float = 0.67
  reduce: str = static_field("min")

  def __post_init__(self):
    if not isinstance(self.base, Rule) or type(self.base).step is not Strategy.step:
      raise ValueError(
          f"prophet base must be a per-sequence Rule value (LowConfidence(), Margin(), "
          f"Entropy(), Threshold(tau=...), EntropyBounded(gamma=...)), got {self.base!r}.")
    for name in ("early", "mid", "late"):
      check_number("prophet", name, getattr(self, name), lambda v: v >= 0,
                   ">= 0 (a top-1 minus top-2 logit gap)")
    check_unit_interval("prophet", "early_until", self.early_until)
    check_unit_interval("prophet", "mid_until", self.mid_until)
    early_until, mid_until = concrete(self.early_until), concrete(self.mid_until)
    if early_until is not None and mid_until is not None and early_until > mid_until:
      raise ValueError(f"prophet early_until ({self.early_until}) must be <= mid_until "
                       f"({self.mid_until}); the stages run early, mid, late.")
    if self.reduce not in REDUCTIONS:
      raise ValueError(f"prophet reduce must be one of {tuple(REDUCTIONS)}, got "
                       f"{self.reduce!r}.")

  @property
  def uses_schedule(self) -> bool:
    return self.base.uses_schedule

  def check(self, config: Any) -> None:
    self.base.check(config)

  def threshold(self, progress: jax.Array) -> jax.Array:
    """The stage's gap threshold at decoding progress `progress` (in [0, 1])."""
    return jnp.where(progress < self.early_until, self.early,
                     jnp.where(progress < self.mid_until, self.mid, self.late))

  def commits_all(self, view: StepView, progress: jax.Array) -> jax.Array:
    """`[]` whether this step commits every eligible position (per sequence)."""
    gap = logit_gap(view)
    watched = view.eligible
    combined = REDUCTIONS[self.reduce](gap, watched)
    return jnp.any(watched) & (combined >= self.threshold(progress))

  def select_at(self, view: StepView, key: jax.Array, progress: jax.Array) -> jax.Array:
    """Per-sequence commit `[W]`: everything eligible, or the base rule's set."""
    return jnp.where(self.commits_all(view, progress), view.eligible,
                     self.base.select(view, key))

  def step(self, ctx: StepContext, state: LoopState) -> LoopState:
    progress = jnp.mean(~state.masked, axis=-1)  # [B] response committed before the step
    noise_keys, select_keys = ctx.step_keys(state)
    view = ctx.view(state, noise_keys)
    commit = jax.vmap(self.select_at)(view, select_keys, progress)
    return ctx.refresh_logits(ctx.commit(state, commit, view.candidates))

  def to_dict(self) -> dict[str, Any]:
    params = {name: getattr(self, name) for name in self.param_names() if name != "base"}
    return {"base": {"strategy": self.base.name, **self.base.to_dict()}, **params}

  @classmethod
  def from_params(cls, params: dict[str, Any]) -> Prophet:
    """The value of a parameter dict; `base` is a Rule value, a rule name, or its JSON form
    `{"strategy": name, **params}`."""
    params = dict(params)
    if "base" in params and not isinstance(params["base"], Strategy):
      params["base"] = _rule_of(params["base"])
    return cls(**params)

  def label(self) -> str:
    """`prophet(base=threshold(tau=0.8), late=2.0)`: the parameters that differ from
    the defaults."""
    defaults = Prophet()
    changed = [] if self.base == defaults.base else [f"base={self.base.label()}"]
    changed += [f"{name}={getattr(self, name)}" for name in self.param_names()
                if name != "base" and getattr(self, name) != getattr(defaults, name)]
    return self.name + (f"({', '.join(changed)})" if changed else "")


def _rule_of(form: Any) -> Rule:
  """A base rule from its name or `{"strategy": name, **params}` (the classic rules)."""
  from lookum_jax.sampling.lookum import BASES

  name, params = (form, {}) if isinstance(form, str) else (None, dict(form))
  if name is None:
    name = params.pop("strategy", None)
  if name not in BASES:
    raise ValueError(f"prophet base must be one of {tuple(BASES)} or a Rule value, got "
                     f"{form!r}.")
  return BASES[name](**params)

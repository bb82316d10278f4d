"""LookUM: Lookahead Unmasking, unmasking as path selection (brief §4).

Each branching step:
  1. *Path generator.* Candidate 0 is the set the base strategy would commit
     (greedy). Candidates 1..K-1 commit the same number of positions, drawn without
     replacement from a high-certainty pool (the top `pool_size` eligible positions
     by the base score, or those above `pool_threshold`) with probability
     proportional to `score ** (1 / proposal_temperature)` (Gumbel top-k).
  2. *Verifier.* Every candidate is committed into its own look-ahead canvas and all
     K canvases go through the model in one batched call; each is scored by its
     certainty (default: average negative entropy over the response).
  3. *Selection.* Importance sampling over the K candidates with weights
     `softmax(score / selection_temperature)` (0 = argmax). The chosen canvas's
     look-ahead logits are the next step's logits: a step costs K forwards, not K + 1.

Under a KV cache the K look-ahead canvases differ only inside the current block, so the
look-ahead forward is K x block tokens against the one shared cache (dual cache), or K x the
positions from the block on (prefix cache).

With `paths=1` the strategy is its base strategy, token for token and NFE for NFE.
"""


from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lookum_jax.sampling import scores
from lookum_jax.sampling.config import strategy_summary
from lookum_jax.sampling.strategies import (
  StepView,
  Strategy,
  pytree_dataclass,
  rank_positions,
  static_field,
)
from lookum_jax.sampling.strategies.rules import (
  Entropy,
  EntropyBounded,
  LowConfidence,
  Margin,
  Rule,
  Threshold,
)
from lookum_jax.sampling.types import (
  LoopState,
  StepContext,
  check_number,
  check_unit_interval,
  concrete,
  row_keys_from,
)
from lookum_jax.sampling.verifier import METRICS, SCOPES, Candidates, Verifier

# ---------------------------------------------------------------------- path generator

class Pool:
  """Which eligible positions LookUM's drawn candidates may commit."""

  name: ClassVar[str] = ""
  reads: ClassVar[frozenset[str]] = frozenset()  # the view statistics `members` reads

  def members(self, view: StepView, rank: jax.Array, count: jax.Array) -> jax.Array:
    """`[W]` pool membership, given the base rule's `rank` and the step's commit `count`."""
    raise NotImplementedError


@pytree_dataclass
class TopK(Pool):
  """The `size` most certain eligible positions (at least as many as a step commits)."""

  name = "top_k"
  size: int = static_field(3)

  def __post_init__(self):
    if self.size < 1:
      raise ValueError(f"pool_size must be >= 1, got {self.size}.")

  def members(self, view, rank, count):
    return rank < jnp.maximum(self.size, count)


@pytree_dataclass
class AboveThreshold(Pool):
  """Certainty filtering: positions with confidence >= `threshold` (traced), and at least
  as many as a step commits."""

  name = "threshold"
  reads = frozenset({"confidence"})
  threshold: float = 0.5

  def members(self, view, rank, count):
    return (view.confidence >= self.threshold) | (rank < count)


@pytree_dataclass
class Eligible(Pool):
  """Every eligible position of the block (with a sharp proposal temperature, e.g. 0.1, the
  draws stay near the greedy set)."""

  name = "eligible"

  def members(self, view, rank, count):
    return view.eligible


@pytree_dataclass
class Proposal:
  """LookUM's path generator beyond the greedy candidate.

  Attributes:
    pool: the positions drawn from (`TopK`, `AboveThreshold`, `Eligible`).
    temperature: sharpness of the draw, probability proportional to `score ** (1 / T)`
      (traced).
    sample_tokens: drawn candidates write tokens sampled from the model's distribution
      instead of its argmax (at the step, from `view.logits`: the loop then carries the
      logits).
  """

  pool: Pool = TopK()
  temperature: float = 1.0
  sample_tokens: bool = static_field(False)

  def __post_init__(self):
    check_number("proposal_temperature", "", self.temperature, lambda v: v > 0, "> 0")

  def statistics(self, base: Rule) -> frozenset[str]:
    """The view statistics the base rule, its proposal score and the pool read."""
    return base.statistics() | base.proposal_reads | self.pool.reads

  def pool_of(self, base: Rule, view: StepView) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The base rule's commit set `[W]`, the pool `[W]` and the step's commit count."""
    greedy = base.select(view, None)  # a rule is a function of the view
    count = jnp.sum(greedy)
    rank = rank_positions(base.score(view), view.eligible, view.demoted)
    return greedy, self.pool.members(view, rank, count) & view.eligible, count

  def propose(self, base: Rule, view: StepView, key: jax.Array, paths: int
              ) -> tuple[jax.Array, jax.Array]:
    """`paths` candidate commit sets `[K, W]` and their tokens `[K, W]` for one sequence:
    the base rule's set, then `paths - 1` draws of as many positions from the pool
    (Gumbel top-k on `base.proposal_log_score / temperature`)."""
    gumbel_key, token_key = jax.random.split(key)
    greedy, in_pool, count = self.pool_of(base, view)
    log_score = base.proposal_log_score(view) / self.temperature
    draws = paths - 1
    uniform = jax.vmap(lambda d: scores.position_uniform(
        jax.random.fold_in(gumbel_key, d), view.positions, (), jnp.finfo(jnp.float32).tiny))(
            jnp.arange(draws))
    gumbel = -jnp.log(-jnp.log(uniform))
    sampled = jax.vmap(
        lambda g: rank_positions(log_score + g, in_pool, view.demoted) < count)(gumbel)
    sampled &= in_pool
    commits = jnp.concatenate([greedy[None], sampled], axis=0)
    tokens = jnp.broadcast_to(view.candidates, commits.shape)
    if self.sample_tokens:  # a draw from the model's distribution, never the mask token
      drawn = jax.vmap(lambda d: scores.gumbel_argmax(
          view.logits, 1.0, jax.random.fold_in(token_key, d), view.positions,
          view.mask_token_id))(jnp.arange(draws))
      tokens = tokens.at[1:].set(drawn)
    return commits, tokens

  def rows_with_choice(self, base: Rule, view: StepView) -> jax.Array:
    """`[B]`: rows whose pool holds more positions than their step commits (otherwise every
    candidate is the greedy set)."""
    _, in_pool, count = jax.vmap(lambda v: self.pool_of(base, v))(view)
    return jnp.sum(in_pool, axis=-1) > count


def rows_uncertain(base: Rule, view: StepView, below: Any) -> jax.Array:
  """`[B]`: rows whose base step would commit a position with confidence below `below`
  (adaptive LookUM searches only there)."""
  greedy = jax.vmap(lambda v: base.select(v, None))(view)
  return jnp.any(greedy & (view.confidence < below), axis=-1)


@pytree_dataclass
class Defer:
  """A path generator for adaptive parallelism (K = 2): the base rule's set, and the same
  set without its uncertain commits, those whose confidence is below `below` (traced); when
  every commit is uncertain, the single most certain one. The verifier then decides whether
  committing the uncertain positions now leaves the canvas more certain than deferring them
  to a later step. A row has a choice only when the two sets differ.

  Named `pool="defer"` in the flat form, with `below` as `defer_below`.
  """

  below: float = 0.99
  sample_tokens: ClassVar[bool] = False

  def __post_init__(self):
    check_unit_interval("defer_below", "", self.below)

  def statistics(self, base: Rule) -> frozenset[str]:
    return base.statistics() | {"confidence"}

  def sets(self, base: Rule, view: StepView) -> tuple[jax.Array, jax.Array]:
    """The base rule's commit set `[W]` and the deferred one `[W]`."""
    greedy = base.select(view, None)
    certain = greedy & (view.confidence >= self.below)
    rank = rank_positions(base.score(view), greedy, view.demoted)
    top = greedy & (rank == 0)
    return greedy, jnp.where(jnp.any(certain), certain, top)

  def propose(self, base: Rule, view: StepView, key: jax.Array, paths: int
              ) -> tuple[jax.Array, jax.Array]:
    del key
    if paths != 2:
      raise ValueError(f"lookum: pool='defer' proposes one alternative (paths=2), got "
                       f"paths={paths}.")
    greedy, deferred = self.sets(base, view)
    commits = jnp.stack([greedy, deferred])
    return commits, jnp.broadcast_to(view.candidates, commits.shape)

  def rows_with_choice(self, base: Rule, view: StepView) -> jax.Array:
    """`[B]`: rows whose deferred set differs from the base rule's."""
    greedy, deferred = jax.vmap(lambda v: self.sets(base, v))(view)
    return jnp.any(greedy != deferred, axis=-1)


# ---------------------------------------------------------------------- selection

class Selector:
  """Which of a row's K verified candidates LookUM keeps."""

  name: ClassVar[str] = ""
  needs_targets: ClassVar[bool] = False

  def choose(self, ctx: StepContext, state: LoopState, cand: Candidates, keys: jax.Array,
             distinct: jax.Array) -> jax.Array:
    """`[B]` index of each row's kept candidate among its `distinct` ones `[B, K]`."""
    raise NotImplementedError


@pytree_dataclass
class ImportanceSampling(Selector):
  """Draws a candidate with weights `softmax(score / temperature)` (the paper's default);
  temperature 0 keeps the most certain one. The temperature is traced."""

  name = "is"
  temperature: float = 0.01

  def __post_init__(self):
    check_number("selection_temperature", "", self.temperature, lambda v: v >= 0, ">= 0")

  def choose(self, ctx, state, cand, keys, distinct):
    score = jnp.where(distinct, cand.score, -jnp.inf)
    sampling = self.temperature > 0
    drawn = jax.vmap(jax.random.categorical)(
        keys, score / jnp.where(sampling, self.temperature, 1.0))
    return jnp.where(sampling, drawn, jnp.argmax(score, axis=-1))


@pytree_dataclass
class Argmax(Selector):
  """Keeps the most certain candidate."""

  name = "argmax"

  def choose(self, ctx, state, cand, keys, distinct):
    return jnp.argmax(jnp.where(distinct, cand.score, -jnp.inf), axis=-1)


@pytree_dataclass
class Oracle(Selector):
  """Experiment control: keeps a candidate that commits no wrong token (the fewest wrong ones
  if none is clean; ties by the verifier's score). Needs `generate(..., targets=...)`."""

  name = "oracle"
  needs_targets = True

  def choose(self, ctx, state, cand, keys, distinct):
    targets = ctx.window_of(ctx.targets, state)  # [B, W]
    wrong = jnp.sum(cand.commits & (cand.tokens != targets[:, None]), axis=-1)  # [B, K]
    # Fewest wrong commits first; the verifier breaks ties (scores are finite, < 1e6).
    score = jnp.where(distinct, cand.score, -jnp.inf)
    rank_key = -wrong.astype(jnp.float32) * 1e6 + jnp.clip(score, -1e5, 1e5)
    return jnp.argmax(jnp.where(distinct, rank_key, -jnp.inf), axis=-1)


@pytree_dataclass
class RandomPick(Selector):
  """Experiment control: keeps a uniformly drawn distinct candidate. The gap between it and
  `Oracle` is the path generator's headroom; where the verifier lands is its quality."""

  name = "random"

  def choose(self, ctx, state, cand, keys, distinct):
    return jax.vmap(jax.random.categorical)(keys, jnp.where(distinct, 0.0, -jnp.inf))


def distinct_candidates(cand: Candidates) -> jax.Array:
  """`[B, K]`: candidate k commits something no earlier candidate of its row commits (the
  same positions with the same tokens count as the same candidate)."""
  content = jnp.where(cand.commits, cand.tokens, -1)  # [B, K, W]
  same = jnp.all(content[:, :, None] == content[:, None, :], axis=-1)  # [B, K, K]
  paths = content.shape[1]
  earlier = jnp.arange(paths)[None, :] < jnp.arange(paths)[:, None]  # [k, j]: j < k
  return ~jnp.any(same & earlier[None], axis=-1)


def keep_chosen(ctx: StepContext, state: LoopState, cand: Candidates, selector: Selector,
                choice_keys: jax.Array, row_choice: jax.Array, dedupe: bool = True
                ) -> LoopState:
  """Commits each row's candidate chosen by `selector` and keeps its look-ahead window
  statistics as the next step's, so a step costs K forwards: one per distinct candidate with
  `dedupe`.

  `row_choice` `[B]`: rows whose K candidates can differ. A row without a choice is charged
  what its base step would cost (one forward, none if the commit finished its block), so a
  row's NFE does not depend on the rest of its batch.
  """
  batch, paths = cand.score.shape
  distinct = distinct_candidates(cand) if dedupe else jnp.ones((batch, paths), bool)
  # A row whose candidates can differ only by their sampled tokens keeps the greedy one, as
  # it would in a batch where no row branches (then the base step runs instead).
  chosen = jnp.where(row_choice, selector.choose(ctx, state, cand, choice_keys, distinct), 0)
  paths = jnp.sum(distinct, axis=-1)
  chosen_of = lambda a: jnp.take_along_axis(
      a, chosen.reshape((batch,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]
  active = ctx.active(state)
  state = ctx.commit(state, chosen_of(cand.commits), chosen_of(cand.tokens))
  forwards = jnp.where(row_choice, paths, ctx.active(state).astype(jnp.int32)) * active
  state = ctx.charge(state, forwards)
  # The kept look-ahead's statistics, computed once from its logits after the commit (whose
  # step count keys the next candidates' noise); the K look-ahead logits are not kept.
  window = ctx.window_stats(state, chosen_of(cand.logits))
  keep = lambda new, old: jnp.where(active.reshape((batch,) + (1,) * (old.ndim - 1)), new, old)
  return state.replace(window=jax.tree.map(keep, window, state.window))


# ---------------------------------------------------------------------- LookUM

class FlatForm:
  """LookUM's and SMC's JSON form: today's flat parameters (`{"paths": 2, "base":
  "threshold", "tau": 0.9, "verifier_scope": "masked", ...}`)."""

  @classmethod
  def from_params(cls, params: dict[str, Any]) -> Strategy:
    """The value of flat parameters (`selection="smc"` gives `SMC`); parts (`base=`,
    `proposal=`, `verifier=`, `selector=`) may be given as values instead."""
    return from_params(params)

  @classmethod
  def param_names(cls) -> tuple[str, ...]:
    return (*FLAT_DEFAULTS, "gamma", "proposal", "selector")

  @classmethod
  def param_types(cls) -> dict[str, Any]:
    # `base` is a name (`"threshold"` with the flat `tau`) or a rule: a value, or its nested
    # form `{"strategy": "pc_sampler", "decay": 0.25}` (parsed by lookum_jax.parsing).
    return {**{name: type(value) for name, value in FLAT_DEFAULTS.items()}, "gamma": float,
            "search_below": float | None, "base": str | Rule}

  def to_dict(self) -> dict[str, Any]:
    return to_params(self)

  def label(self) -> str:
    """`lookum(paths=3, base=threshold)`: the flat parameters that differ from LookUM()'s."""
    defaults = {**FLAT_DEFAULTS, "gamma": EntropyBounded.gamma}
    changed = [f"{k}={_short(v)}" for k, v in to_params(self).items() if v != defaults.get(k)]
    return self.name + (f"({', '.join(changed)})" if changed else "")


def _short(value: Any) -> str:
  """A flat parameter as a label shows it (a nested base as `pc_sampler(decay=0.25, ...)`)."""
  if isinstance(value, dict) and "strategy" in value:
    params = dict(value)
    name = params.pop("strategy")
    return f"{name}({', '.join(f'{k}={v}' for k, v in params.items())})"
  return str(value)


@pytree_dataclass
class LookUM(FlatForm, Strategy):
  """Lookahead unmasking, built from parts. The defaults are the setting we recommend after
  the studies in experiments/README.md (a pool of 3, every candidate judged on the positions
  still masked after all of them); `LookUM.paper()` is the paper's reported setting.

  Attributes:
    paths: K candidate paths per step (1 = the base rule exactly).
    base: the commit rule behind the greedy candidate and the pool's ranking (any `Rule`:
      `LowConfidence()`, `Margin()`, `Threshold(tau=...)`, `EntropyBounded(gamma=...)`).
    proposal: the pool and the draw of the other K - 1 candidates (`Proposal`).
    verifier: how look-ahead canvases are scored (`Verifier`).
    selector: which candidate is kept (`ImportanceSampling`, `Argmax`, `Oracle`,
      `RandomPick`).
    branch_every: branch on every n-th step; other steps are plain base steps.
    dedupe: candidates identical to an earlier one of the same step are dropped from the
      selection and cost no NFE (the batched program still computes them).
    search_below: adaptive LookUM: a row runs its K look-aheads only at steps where the base
      rule would commit a position whose confidence is below this number (traced, so a
      sweep compiles once); at other steps it commits as the base does, at the base's cost.
      None (the default): every step searches.
  """

  name = "lookum"
  paths: int = static_field(2)
  base: Rule = LowConfidence()
  proposal: Proposal | Defer = Proposal()
  verifier: Verifier = Verifier()
  selector: Selector = ImportanceSampling()
  branch_every: int = static_field(1)
  dedupe: bool = static_field(True)
  search_below: float | None = None

  def __post_init__(self):
    check_parts("lookum", self.paths, self.base, self.branch_every)
    if self.search_below is not None:
      check_number("search_below", "", self.search_below, lambda v: 0.0 <= v <= 1.0,
                   "a confidence in [0, 1] (or None to search at every step)")
    if not isinstance(self.selector, Selector):
      raise ValueError(f"lookum: selector must be a Selector value (ImportanceSampling(), "
                       f"Argmax(), Oracle(), RandomPick()), got {self.selector!r}.")

  @classmethod
  def paper(cls, **changes: Any) -> LookUM:
    """The paper's reported setting, whatever the defaults become: K = 2 paths drawn from
    the 5 most certain positions over a low-confidence base, the mean negative entropy of
    the look-ahead response as the verifier, importance sampling at temperature 0.01, every
    step branching; duplicates are not dropped (the paper charges K forwards a step).
    `changes` override parameters by today's names (e.g. `paths=3`) or parts."""
    setting = dict(paths=2, pool_size=5, pool="top_k", proposal_temperature=1.0,
                   base="low_confidence", verifier="neg_entropy", verifier_scope="response",
                   selection="is", selection_temperature=0.01, branch_every=1,
                   entropy_cost=0.0, dedupe=False)
    return from_params({**setting, **changes})

  @property
  def uses_schedule(self) -> bool:
    return self.base.uses_schedule

  @property
  def needs_targets(self) -> bool:
    """The oracle control reads the reference answers (`generate(..., targets=...)`)."""
    return self.selector.needs_targets

  def statistics(self) -> frozenset[str]:
    """The base rule's and the proposal's statistics, the entropy the verifier's
    `entropy_cost` charges (traced, so always computed), and the confidence `search_below`
    compares."""
    extra = frozenset() if self.search_below is None else frozenset({"confidence"})
    return self.proposal.statistics(self.base) | {"entropy"} | extra

  def carries_logits(self, config) -> bool:
    """Its own `needs_logits`, its base's, or drawn tokens (`Proposal.sample_tokens`)."""
    return (self.needs_logits or self.base.carries_logits(config)
            or self.proposal.sample_tokens)

  def base_step(self, ctx: StepContext, state: LoopState) -> LoopState:
    return ctx.select_step(state, self.base.select)

  def branch_step(self, ctx: StepContext, state: LoopState, view: StepView,
                  row_choice: jax.Array, select_keys: jax.Array) -> LoopState:
    """Propose K sets, verify all K look-aheads in one call, keep one."""
    propose_keys, choice_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
    commits, tokens = jax.vmap(
        lambda v, k: self.proposal.propose(self.base, v, k, self.paths))(view, propose_keys)
    cand = self.verifier.verify(ctx, state, commits, tokens)
    return keep_chosen(ctx, state, cand, self.selector, choice_keys, row_choice, self.dedupe)

  def step(self, ctx, state):
    """A LookUM step, or a plain base step when not branching."""
    if self.paths == 1:
      return self.base_step(ctx, state)
    # Branch only where some row has a choice: when every pool is no larger than what the
    # step commits (e.g. a block's last step), all K candidates would be the greedy set.
    noise_keys, select_keys = ctx.step_keys(state)
    view = ctx.view(state, noise_keys)
    row_choice = self.proposal.rows_with_choice(self.base, view)
    if self.search_below is not None:
      row_choice &= rows_uncertain(self.base, view, self.search_below)
    branch = jnp.any(ctx.active(state) & row_choice)
    if self.branch_every > 1:
      branch &= state.block_step % self.branch_every == 0
    return jax.lax.cond(
        branch, lambda s: self.branch_step(ctx, s, view, row_choice, select_keys),
        lambda s: self.base_step(ctx, s), state)


def check_smc_temperature(temperature: Any) -> None:
  if (value := concrete(temperature)) is not None and not value > 0:
    raise ValueError("lookum: selection='smc' needs selection_temperature > 0 (its weights are "
                     f"exp(score / temperature)), got {temperature!r}.")


def check_parts(owner: str, paths: int, base: Any, branch_every: int = 1) -> None:
  if paths < 1:
    raise ValueError(f"{owner}: paths must be >= 1, got {paths}.")
  if branch_every < 1:
    raise ValueError(f"{owner}: branch_every must be >= 1, got {branch_every}.")
  if not isinstance(base, Rule):
    raise ValueError(f"{owner}: base must be one of {BASE_NAMES} or a Rule value "
                     f"(LowConfidence(), Margin(), Threshold(tau=...), "
                     f"EntropyBounded(gamma=...)), got {base!r}.")


# ---------------------------------------------------------------------- SMC

@pytree_dataclass
class SMC(FlatForm, Strategy):
  """Sequential Monte Carlo over LookUM's proposals (the paper's ablation): each row is
  decoded as K particles; each step every particle commits a set (particle 0 the base rule's
  set with `greedy_particle`, the others a draw from the pool), accumulates the log-weight
  `score / temperature`, and a row's particles are resampled when their effective sample
  size falls below `resample_threshold * K`. The heaviest particle is returned, with the
  forwards of all of them. SMC wraps the loop (`decode`): the loop core knows nothing of
  particles.

  Named "lookum" with `selection="smc"` at the command line and in JSON.
  """

  name = "lookum"
  paths: int = static_field(2)
  base: Rule = LowConfidence()
  proposal: Proposal = Proposal()
  verifier: Verifier = Verifier()
  temperature: float = 0.01
  resample_threshold: float = 0.5
  greedy_particle: bool = static_field(True)

  def __post_init__(self):
    check_parts("lookum", self.paths, self.base)
    check_smc_temperature(self.temperature)
    check_unit_interval("lookum:", "resample_threshold", self.resample_threshold)

  @property
  def uses_schedule(self) -> bool:
    return self.base.uses_schedule

  def statistics(self) -> frozenset[str]:
    return self.proposal.statistics(self.base)

  def carries_logits(self, config) -> bool:
    """Under sampling, a resampled particle continues another's path but draws its
    candidates with its own noise key (`LoopState.ROW_OWN`), which only the logits allow."""
    return (config.sampled or self.needs_logits or self.base.carries_logits(config)
            or self.proposal.sample_tokens)

  def observe(self, ctx, logits):
    """The verifier's per-position certainty of each forward (its particle weights)."""
    return self.verifier.metric(logits)

  def init_state(self, ctx, batch_size):
    return {"log_weight": jnp.zeros((batch_size,), jnp.float32)}

  def step(self, ctx, state):
    if self.paths == 1:
      return ctx.select_step(state, self.base.select)
    return smc_step(self, ctx, state)

  def decode(self, run, *args, **kwargs):
    if self.paths == 1:
      return run(*args, **kwargs)
    return smc_decode(self, run, *args, **kwargs)


def smc_step(smc: SMC, ctx: StepContext, state: LoopState) -> LoopState:
  """One SMC step over particles (rows `b * K + j`): draw, commit, forward, reweight,
  and resample a row's particles when their effective sample size is low."""
  paths = smc.paths
  noise_keys, select_keys = ctx.step_keys(state)
  propose_keys, resample_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
  view = ctx.view(state, noise_keys)
  # The base rule's set and one draw from the pool.
  commits, tokens = jax.vmap(lambda v, k: smc.proposal.propose(smc.base, v, k, 2))(
      view, propose_keys)
  before = state
  active = ctx.active(state)
  drawn = jnp.ones((commits.shape[0],), bool)
  if smc.greedy_particle:  # particle 0 of each row follows the greedy set
    drawn = jnp.arange(commits.shape[0]) % paths != 0
  # Each particle's set: the pool draw (candidate 1), or the greedy set (candidate 0).
  particle_set = lambda a: jnp.where(drawn.reshape((-1,) + (1,) * (a.ndim - 2)), a[:, 1],
                                     a[:, 0])
  state = ctx.refresh_logits(ctx.commit(state, particle_set(commits), particle_set(tokens)))
  # One path per particle: the "common" scope is its "masked" scope.
  scope = smc.verifier.scope(ctx, before, ctx.window_masked(state)[:, None])
  window = state.window
  certainty = (window.observed if window.logits is None
               else smc.verifier.metric(window.logits))  # [B, W], of the fresh forward
  score = smc.verifier.mean_over(certainty[:, None], scope)[:, 0]
  # Rows that just finished their block have no fresh forward and nothing left to judge:
  # their weight stops changing.
  log_weight = state.strategy_state["log_weight"] + jnp.where(
      active & ctx.active(state), score / smc.temperature, 0.0)

  rows = log_weight.shape[0] // paths
  grouped = log_weight.reshape(rows, paths)
  weights = jax.nn.softmax(grouped, axis=-1)
  ess = 1.0 / jnp.sum(weights * weights, axis=-1)
  resample = ess < smc.resample_threshold * paths
  draws = jax.vmap(lambda k, lw: jax.random.categorical(k, lw, shape=(paths,)))(
      resample_keys.reshape(rows, paths)[:, 0], grouped)
  source = jnp.where(resample[:, None], draws, jnp.arange(paths)[None])
  source = (source + paths * jnp.arange(rows)[:, None]).reshape(-1)
  state = state.take_paths(source)
  log_weight = jnp.where(jnp.repeat(resample, paths), 0.0, log_weight)
  return state.replace(strategy_state={"log_weight": log_weight})


def smc_decode(smc: SMC, run, model, prompt_ids, prompt_mask, key, config, **kwargs):
  """SMC around the loop: each row decoded as K particles (rows repeated, row-major, each
  with key `fold_in(row_key, j)`), then each row's heaviest particle, with the forward
  passes of all its particles."""
  paths = smc.paths
  batch = prompt_ids.shape[0]
  row_keys = row_keys_from(key, batch)
  keys = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(
      jnp.arange(paths)))(row_keys).reshape(-1)
  repeat = lambda a: None if a is None else jnp.repeat(a, paths, axis=0)
  result = run(model, repeat(prompt_ids), repeat(prompt_mask), keys, config, **kwargs)
  log_weight = result.strategy_state["log_weight"].reshape(batch, paths)
  best = jnp.argmax(log_weight, axis=-1) + paths * jnp.arange(batch)
  per_row = lambda a: a.reshape(batch, paths).sum(axis=-1)
  return dataclasses.replace(
      result, tokens=result.tokens[best], nfe=per_row(result.nfe),
      num_steps=result.num_steps[best], unmask_order=result.unmask_order[best],
      forward_tokens=per_row(result.forward_tokens), strategy_state={"log_weight": log_weight})


# ---------------------------------------------------------------------- the JSON form

# Today's flat parameters and their defaults: the JSON form of LookUM and SMC values.
FLAT_DEFAULTS: dict[str, Any] = dict(
    paths=2, pool_size=3, pool="top_k", pool_threshold=0.5, proposal_temperature=1.0,
    sample_tokens=False, base="low_confidence", tau=0.9, verifier="neg_entropy",
    verifier_scope="common", selection_temperature=0.01, branch_every=1, selection="is",
    resample_threshold=0.5, entropy_cost=0.0, smc_greedy_particle=True, dedupe=True,
    search_below=None, defer_below=0.99)
BASES: dict[str, type[Rule]] = {
    "low_confidence": LowConfidence, "margin": Margin, "threshold": Threshold,
    "entropy": Entropy, "entropy_bounded": EntropyBounded}
BASE_NAMES = tuple(BASES)
POOLS: dict[str, type[Pool]] = {"top_k": TopK, "threshold": AboveThreshold,
                                "eligible": Eligible}


# LookUM's flat parameters (or parts built from them).
Flat = dict[str, Any]
# A selection's strategy from the flat parameters, the given ones and the parts
# (base, proposal, verifier).
Build = Callable[[Flat, Flat, Flat], Strategy]


def _pool_proposal(pool_of: Callable[[Flat], Pool]) -> Callable[[Flat], Proposal]:
  """The flat form's proposal drawing from the pool `pool_of(flat)` builds."""
  return lambda flat: Proposal(pool=pool_of(flat), temperature=flat["proposal_temperature"],
                               sample_tokens=flat["sample_tokens"])


def _defer_proposal(flat: Flat) -> Defer:
  if flat["paths"] != 2:
    raise ValueError(f"pool='defer' proposes one alternative: paths must be 2, got "
                     f"{flat['paths']}")
  return Defer(below=flat["defer_below"])


# The flat form's `pool` names -> the proposal of the flat parameters.
PROPOSALS: dict[str, Callable[[Flat], Proposal | Defer]] = {
    "top_k": _pool_proposal(lambda flat: TopK(size=flat["pool_size"])),
    "threshold": _pool_proposal(lambda flat: AboveThreshold(threshold=flat["pool_threshold"])),
    "eligible": _pool_proposal(lambda flat: Eligible()),
    "defer": _defer_proposal,
}


def _smc_of(flat: Flat, params: Flat, parts: Flat) -> SMC:
  """`selection="smc"`: particles that branch at every step."""
  del params
  if flat["search_below"] is not None:
    raise ValueError("search_below is for LookUM's selections, not selection='smc' (whose "
                     "particles branch at every step); drop search_below")
  return SMC(paths=flat["paths"], **parts, temperature=flat["selection_temperature"],
             resample_threshold=flat["resample_threshold"],
             greedy_particle=flat["smc_greedy_particle"])


def _lookum_with(selector_of: Callable[[Flat], Selector]) -> Build:
  """A LookUM selection: the selector `selector_of(flat)` builds, unless one is given."""
  def build(flat: Flat, params: Flat, parts: Flat) -> LookUM:
    check_unit_interval("resample_threshold", "", flat["resample_threshold"])
    selector = params.get("selector")
    if selector is None:
      selector = selector_of(flat)
    return LookUM(paths=flat["paths"], **parts, selector=selector,
                  branch_every=flat["branch_every"], dedupe=flat["dedupe"],
                  search_below=flat["search_below"])
  return build


# The flat form's `selection` names -> the strategy of the flat parameters and its parts.
_SELECTIONS: dict[str, Build] = {
    "is": _lookum_with(lambda flat: ImportanceSampling(
        temperature=flat["selection_temperature"])),
    "smc": _smc_of,
    "oracle": _lookum_with(lambda flat: Oracle()),
    "random": _lookum_with(lambda flat: RandomPick()),
    "argmax": _lookum_with(lambda flat: Argmax()),
}
SELECTIONS = tuple(_SELECTIONS)


def _base_from(name_or_rule: Any, params: dict[str, Any]) -> Rule:
  """The base rule of a name or a value; `params` (the flat `tau`, `gamma` that were given)
  set the rule's fields of those names."""
  if isinstance(name_or_rule, dict):  # the nested JSON form of a rule with no flat name
    from lookum_jax.parsing import parse_strategy  # the parser imports this module
    spec = dict(name_or_rule)
    name = spec.pop("strategy", None)
    if not isinstance(name, str):
      raise ValueError(f"a base given as a dict needs its strategy's name under 'strategy' "
                       f"(e.g. {{'strategy': 'pc_sampler', 'decay': 0.25}}), got {name_or_rule!r}")
    name_or_rule = parse_strategy(name, spec, what="base")
    if not isinstance(name_or_rule, Rule):
      raise ValueError(f"base {name!r} is not a commit rule LookUM can branch on; use one of "
                       f"{BASE_NAMES} or a Rule value such as PCSampler()")
  if isinstance(name_or_rule, Rule):
    fields = {f.name for f in dataclasses.fields(name_or_rule)}
    changes = {k: v for k, v in params.items() if k in fields}
    return dataclasses.replace(name_or_rule, **changes) if changes else name_or_rule
  if name_or_rule not in BASES:
    raise ValueError(f"base must be one of {BASE_NAMES} or a Rule value, got "
                     f"{name_or_rule!r}")
  cls = BASES[name_or_rule]
  fields = {f.name for f in dataclasses.fields(cls)}
  return cls(**{k: v for k, v in params.items() if k in fields})


def from_params(params: dict[str, Any]) -> Strategy:
  """A LookUM (or SMC) value from today's flat parameters; parts (`base=Threshold(...)`,
  `proposal=`, `verifier=Verifier(...)`, `selector=`) may be given as values instead."""
  params = dict(params)
  allowed = set(FLAT_DEFAULTS) | {"gamma", "proposal", "selector"}
  unknown = sorted(set(params) - allowed)
  if unknown:
    raise ValueError(f"unknown parameter(s) {unknown} for strategy 'lookum'; valid "
                     f"parameters: {', '.join(sorted(allowed))}.")
  flat = {**FLAT_DEFAULTS, "gamma": EntropyBounded.gamma, **params}
  try:
    for name in ("paths", "branch_every"):
      if flat[name] < 1:
        raise ValueError(f"{name} must be >= 1, got {flat[name]}")
    base = _base_from(flat["base"], {k: params[k] for k in ("tau", "gamma") if k in params}
                      if isinstance(flat["base"], Rule | dict) else
                      {"tau": flat["tau"], "gamma": flat["gamma"]})
    check_unit_interval("tau", "", flat["tau"])
    if isinstance(flat.get("verifier"), Verifier):
      verifier = flat["verifier"]
    else:
      verifier = Verifier(flat["verifier"], flat["verifier_scope"], flat["entropy_cost"])
    proposal = params.get("proposal")
    if proposal is None:
      if flat["pool"] not in PROPOSALS:
        raise ValueError(f"pool must be one of {tuple(PROPOSALS)}, got {flat['pool']!r}")
      proposal = PROPOSALS[flat["pool"]](flat)
    selection = flat["selection"]
    if selection not in _SELECTIONS:
      raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    check_number("selection_temperature", "", flat["selection_temperature"],
                 lambda v: v >= 0, ">= 0")
    parts = dict(base=base, proposal=proposal, verifier=verifier)
    value = _SELECTIONS[selection](flat, params, parts)
  except ValueError as error:
    message = str(error).removeprefix("lookum: ").rstrip(".")
    raise ValueError(f"lookum: {message}.") from None
  return value


def to_params(value: LookUM | SMC) -> dict[str, Any]:
  """The flat JSON form of a LookUM or SMC value (`from_params` reads it back)."""
  flat = dict(FLAT_DEFAULTS)
  base = value.base
  base_name = next((name for name, cls in BASES.items() if type(base) is cls), None)
  if base_name is None:  # any other rule (PCSampler) nests: {"strategy": name, **params}
    flat.update(base=strategy_summary(base))
  else:
    flat.update(base=base_name, **base.to_dict())
  pool = getattr(value.proposal, "pool", None)
  if isinstance(value.proposal, Defer):
    flat.update(pool="defer", defer_below=value.proposal.below)
  else:
    flat.update(pool=pool.name, proposal_temperature=value.proposal.temperature,
                sample_tokens=value.proposal.sample_tokens)
  if isinstance(pool, TopK):
    flat["pool_size"] = pool.size
  if isinstance(pool, AboveThreshold):
    flat["pool_threshold"] = pool.threshold
  flat.update(paths=value.paths, **value.verifier.to_dict())
  if isinstance(value, SMC):
    flat.update(selection="smc", selection_temperature=value.temperature,
                resample_threshold=value.resample_threshold,
                smc_greedy_particle=value.greedy_particle)
  else:
    flat.update(selection=value.selector.name, branch_every=value.branch_every,
                dedupe=value.dedupe, search_below=value.search_below)
    if isinstance(value.selector, ImportanceSampling):
      flat["selection_temperature"] = value.selector.temperature
  return flat


__all__ = [
    "AboveThreshold", "Argmax", "Candidates", "Defer", "Eligible", "ImportanceSampling", "LookUM",
    "METRICS", "Oracle", "Pool", "Proposal", "RandomPick", "SCOPES", "SMC", "Selector", "TopK",
    "Verifier", "keep_chosen",
]

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
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.sampling import scores
from lookum_jax.sampling.loop import GenerationResult, LoopState, StepContext
from lookum_jax.sampling.strategies import (
    StepView,
    Strategy,
    commit_at_least_one,
    commit_top_k,
    rank_positions,
)

# Verifier metrics: per-position certainty `[..., W]` from look-ahead logits `[..., W, V]`.
VerifierMetric = Callable[[jax.Array], jax.Array]
VERIFIER_METRICS: dict[str, VerifierMetric] = {
    "neg_entropy": lambda logits: -scores.entropy(logits),
    "confidence": scores.top1_probability,
    "margin": scores.margin,
}
BASES = ("low_confidence", "margin", "threshold")
POOLS = ("top_k", "threshold", "eligible")
SCOPES = ("response", "masked", "common", "committed", "block")
SELECTIONS = ("is", "smc", "oracle", "random")


def check_verifier(owner: str, verifier: str, scope: str) -> None:
  """Validates a verifier metric and scope (shared by every LookUM-style strategy)."""
  if verifier not in VERIFIER_METRICS:
    raise ValueError(f"{owner}: verifier must be one of {sorted(VERIFIER_METRICS)}, got "
                     f"{verifier!r}.")
  if scope == "sequence":
    raise ValueError(
        f"{owner}: verifier_scope='sequence' was removed: it averaged over prompt positions, "
        "whose outputs are untrained (models are trained on masked positions only) and which "
        "the engine no longer computes. Use verifier_scope='response'.")
  if scope not in SCOPES:
    raise ValueError(f"{owner}: verifier_scope must be one of {SCOPES}, got {scope!r}.")


@dataclasses.dataclass(frozen=True)
class LookUM(Strategy):
  """LookUM options. The defaults are the setting we recommend after the studies in
  experiments/README.md (a pool of 3, every candidate judged on the positions still masked
  after all of them); `LookUM.paper()` is the paper's reported setting (a pool of 5, the
  whole response).

  Attributes:
    paths: K candidate paths per step (1 = the base strategy exactly).
    pool_size: M, the pool of most certain eligible positions candidates draw from.
    pool: "top_k" (M most certain), "threshold" (certainty filtering: positions
      with confidence >= pool_threshold, at least as many as a step commits) or
      "eligible" (every eligible position of the block; with a sharp
      proposal_temperature, e.g. 0.1, the draws stay near the greedy set).
    pool_threshold: the certainty filter's threshold.
    proposal_temperature: sharpness of the draw from the pool (score ** (1/T)).
    sample_tokens: non-greedy candidates use tokens sampled from the model's
      distribution instead of its argmax.
    base: "low_confidence", "margin" (scheduled counts) or "threshold" (Fast-dLLM
      counts; scores are confidences).
    tau: the threshold base's confidence threshold.
    verifier: a key of `VERIFIER_METRICS` ("neg_entropy", "confidence", "margin").
    entropy_cost: lambda of the information-gain form: the score is the verifier's
      certainty minus lambda x the summed entropy (under the current logits) of the
      positions the candidate commits, so a candidate is not rewarded for committing
      uncertain positions and removing them from the average (0 = the plain score).
    verifier_scope: positions averaged, all within the response (prompt positions are
      never scored: their outputs are untrained): "response" (every response position the
      look-ahead recomputes: the whole response without a KV cache, the current block with
      one; the paper's sequence-level score), "masked" (still masked after the candidate's
      commit: favours committing uncertain positions, which leave the average), "common"
      (masked after every candidate's commit: all candidates are judged on the same
      positions), "committed" (the positions the candidate just committed: does the
      model, seeing them in context, still agree with them?) or "block" (the current
      block).
    selection_temperature: softmax temperature of the importance weights (0 = argmax).
    branch_every: branch on every n-th step; other steps are plain base steps.
    selection: "is" (per-step importance sampling over K candidates, the paper's
      default) or "smc" (sequential Monte Carlo, the paper's ablation: K particles per
      row each commit a drawn set, accumulate log-weights score / selection_temperature,
      and are resampled within the row when the effective sample size falls below
      `resample_threshold * K`; the heaviest particle is returned). SMC wraps the loop
      (`decode`): the loop core knows nothing of particles.
      Controls for experiments, on the same K proposals: "oracle" keeps a candidate
      that commits no wrong token (the fewest wrong ones if none is clean; ties by the
      verifier's score; needs `generate(..., targets=...)`), "random" keeps a uniformly
      drawn one. The gap between them is the path generator's headroom; where the
      verifier lands in between is its quality.
    resample_threshold: SMC's ESS fraction that triggers resampling.
    smc_greedy_particle: particle 0 of each row commits the greedy set at every step (as
      importance sampling always keeps the greedy set as candidate 0), so SMC and IS are
      compared like for like; the others draw from the pool.
    dedupe: candidates identical to an earlier one of the same step are dropped from the
      selection and cost no NFE (the batched program still computes them).
  """

  name = "lookum"
  paths: int = 2
  pool_size: int = 3
  pool: str = "top_k"
  pool_threshold: float = 0.5
  proposal_temperature: float = 1.0
  sample_tokens: bool = False
  base: str = "low_confidence"
  tau: float = 0.9
  verifier: str = "neg_entropy"
  verifier_scope: str = "common"
  selection_temperature: float = 0.01
  branch_every: int = 1
  selection: str = "is"
  resample_threshold: float = 0.5
  entropy_cost: float = 0.0
  smc_greedy_particle: bool = True
  dedupe: bool = True

  def __post_init__(self):
    checks = [
        (self.paths >= 1, f"paths must be >= 1, got {self.paths}"),
        (self.pool_size >= 1, f"pool_size must be >= 1, got {self.pool_size}"),
        (self.pool in POOLS, f"pool must be one of {POOLS}, got {self.pool!r}"),
        (self.base in BASES, f"base must be one of {BASES}, got {self.base!r}"),
        (self.proposal_temperature > 0,
         f"proposal_temperature must be > 0, got {self.proposal_temperature}"),
        (self.selection_temperature >= 0,
         f"selection_temperature must be >= 0, got {self.selection_temperature}"),
        (self.branch_every >= 1, f"branch_every must be >= 1, got {self.branch_every}"),
        (0.0 <= self.tau <= 1.0, f"tau must be in [0, 1], got {self.tau}"),
        (self.selection in SELECTIONS,
         f"selection must be one of {SELECTIONS}, got {self.selection!r}"),
        (self.selection != "smc" or self.selection_temperature > 0,
         "selection='smc' needs selection_temperature > 0 (its weights are "
         "exp(score / temperature))"),
        (0.0 <= self.resample_threshold <= 1.0,
         f"resample_threshold must be in [0, 1], got {self.resample_threshold}"),
        (self.entropy_cost >= 0, f"entropy_cost must be >= 0, got {self.entropy_cost}"),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f"lookum: {message}.")
    check_verifier("lookum", self.verifier, self.verifier_scope)

  @classmethod
  def paper(cls, **changes: Any) -> LookUM:
    """The paper's reported setting, whatever the defaults become: K = 2 paths drawn from
    the 5 most certain positions over a low-confidence base, the mean negative entropy of
    the look-ahead response as the verifier, importance sampling at temperature 0.01, every
    step branching; duplicates are not dropped (the paper charges K forwards a step).
    `changes` override fields (e.g. `paths=3`)."""
    setting = dict(paths=2, pool_size=5, pool="top_k", proposal_temperature=1.0,
                   base="low_confidence", verifier="neg_entropy", verifier_scope="response",
                   selection="is", selection_temperature=0.01, branch_every=1,
                   entropy_cost=0.0, dedupe=False)
    return cls(**{**setting, **changes})

  @property
  def uses_schedule(self) -> bool:
    return self.base != "threshold"

  @property
  def needs_targets(self) -> bool:
    """The oracle control reads the reference answers (`generate(..., targets=...)`)."""
    return self.selection == "oracle"

  def init_state(self, ctx, batch_size):
    if self.selection == "smc":
      return {"log_weight": jnp.zeros((batch_size,), jnp.float32)}
    return None

  def step(self, ctx, state):
    return lookum_step(self, ctx, state)

  def decode(self, run, *args, **kwargs):
    if self.selection != "smc" or self.paths == 1:
      return run(*args, **kwargs)
    return smc_decode(self, run, *args, **kwargs)


# ---------------------------------------------------------------------- path generator

def base_score(params: LookUM, view: StepView) -> jax.Array:
  """The base strategy's ranking score per position `[..., W]`."""
  if params.base == "margin":
    return scores.margin(view.logits)
  return view.certainty


def base_commit(params: LookUM, view: StepView) -> jax.Array:
  """The base strategy's (greedy) commit set for one sequence `[W]`."""
  score = base_score(params, view)
  if params.base == "threshold":
    above = (view.confidence >= params.tau) & ~view.demoted
    return commit_at_least_one(above, score, view)
  return commit_top_k(score, view, view.num_transfer)


def candidate_pool(params: LookUM, view: StepView) -> tuple[jax.Array, jax.Array]:
  """The positions `[W]` candidates draw from, and how many a step commits (one sequence)."""
  count = jnp.sum(base_commit(params, view))
  rank = rank_positions(base_score(params, view), view.eligible, view.demoted)
  if params.pool == "top_k":
    in_pool = rank < jnp.maximum(params.pool_size, count)
  elif params.pool == "eligible":
    in_pool = view.eligible
  else:
    in_pool = (view.confidence >= params.pool_threshold) | (rank < count)
  return in_pool & view.eligible, count


def propose(params: LookUM, view: StepView, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """K candidate commit sets `[K, W]` and their tokens `[K, W]` for one sequence."""
  greedy = base_commit(params, view)
  in_pool, count = candidate_pool(params, view)
  # Log-odds rank like confidences, without ties at probability 1.
  log_score = (jnp.log(jnp.maximum(scores.margin(view.logits), 1e-20))
               if params.base == "margin" else
               jax.nn.log_sigmoid(view.certainty)) / params.proposal_temperature
  gumbel_key, token_key = jax.random.split(key)
  draws = params.paths - 1
  uniform = jax.vmap(lambda d: scores.position_uniform(
      jax.random.fold_in(gumbel_key, d), view.positions, (), jnp.finfo(jnp.float32).tiny))(
          jnp.arange(draws))
  gumbel = -jnp.log(-jnp.log(uniform))
  sampled = jax.vmap(
      lambda g: rank_positions(log_score + g, in_pool, view.demoted) < count)(gumbel)
  sampled &= in_pool
  commits = jnp.concatenate([greedy[None], sampled], axis=0)
  tokens = jnp.broadcast_to(view.candidates, commits.shape)
  if params.sample_tokens:  # a draw from the model's distribution, never the mask token
    drawn = jax.vmap(lambda d: scores.gumbel_argmax(
        view.logits, 1.0, jax.random.fold_in(token_key, d), view.positions,
        view.mask_token_id))(jnp.arange(draws))
    tokens = tokens.at[1:].set(drawn)
  return commits, tokens


def rows_with_choice(params: LookUM, view: StepView) -> jax.Array:
  """`[B]`: rows whose pool holds more positions than their step commits (otherwise every
  candidate is the greedy set)."""
  in_pool, count = jax.vmap(lambda v: candidate_pool(params, v))(view)
  return jnp.sum(in_pool, axis=-1) > count


# ---------------------------------------------------------------------- verifier

def verifier_score(params: Any, logits: jax.Array, scope: jax.Array) -> jax.Array:
  """Mean certainty of look-ahead logits `[..., W, V]` over `scope` `[..., W]` -> `[...]`."""
  certainty = VERIFIER_METRICS[params.verifier](logits)
  total = jnp.sum(jnp.where(scope, certainty, 0.0), axis=-1)
  return total / jnp.maximum(jnp.sum(scope, axis=-1), 1)


def verifier_scope(scope_name: str, ctx: StepContext, state: LoopState,
                   lookahead_masked: jax.Array) -> jax.Array:
  """Window positions `[B, K, W]` the verifier averages over."""
  if scope_name == "masked":
    return lookahead_masked
  if scope_name == "common":
    return jnp.broadcast_to(jnp.all(lookahead_masked, axis=1, keepdims=True),
                            lookahead_masked.shape)
  if scope_name == "committed":
    return ctx.window_masked(state)[:, None] & ~lookahead_masked
  if scope_name == "block":
    return jnp.broadcast_to(ctx.in_block(state)[None, None], lookahead_masked.shape)
  return jnp.ones(lookahead_masked.shape, bool)  # "response": the whole window


@struct.dataclass
class Candidates:
  """One branching step's K candidate paths per row (shapes `[B, K, ...]`)."""

  commits: jax.Array  # [B, K, W] bool, positions each candidate commits
  tokens: jax.Array  # [B, K, W] int32, the tokens it writes there
  logits: jax.Array  # [B, K, W, V] look-ahead logits
  score: jax.Array  # [B, K] verifier score (higher = more certain)


def verify(params: Any, ctx: StepContext, state: LoopState, commits: jax.Array,
           tokens: jax.Array) -> Candidates:
  """Scores K candidate commit sets per row (`commits`, `tokens` `[B, K, W]`) by the
  certainty of their look-ahead states, all B * K look-aheads in one model call.

  `params` needs `verifier` and `verifier_scope`; other path generators (e.g. a learned
  policy's draws) reuse the verifier through this function.
  """
  commits &= (ctx.eligible(state) & ctx.active(state)[:, None])[:, None]
  logits = ctx.lookahead(state, commits, tokens)
  scope = verifier_scope(params.verifier_scope, ctx, state,
                         ctx.window_masked(state)[:, None] & ~commits)
  score = verifier_score(params, logits, scope)
  entropy_cost = getattr(params, "entropy_cost", 0.0)
  if entropy_cost:  # the information-gain form: pay for the uncertainty committed
    committed = jnp.sum(jnp.where(commits, scores.entropy(state.logits)[:, None], 0.0), -1)
    score = score - entropy_cost * committed
  return Candidates(commits=commits, tokens=tokens, logits=logits, score=score)


def distinct_candidates(cand: Candidates) -> jax.Array:
  """`[B, K]`: candidate k commits something no earlier candidate of its row commits (the
  same positions with the same tokens count as the same candidate)."""
  content = jnp.where(cand.commits, cand.tokens, -1)  # [B, K, W]
  same = jnp.all(content[:, :, None] == content[:, None, :], axis=-1)  # [B, K, K]
  paths = content.shape[1]
  earlier = jnp.arange(paths)[None, :] < jnp.arange(paths)[:, None]  # [k, j]: j < k
  return ~jnp.any(same & earlier[None], axis=-1)


def choose(ctx: StepContext, state: LoopState, cand: Candidates, keys: jax.Array,
           temperature: float, selection: str, distinct: jax.Array) -> jax.Array:
  """`[B]` index of each row's kept candidate among its distinct ones."""
  score = jnp.where(distinct, cand.score, -jnp.inf)
  if selection == "random":
    return jax.vmap(jax.random.categorical)(keys, jnp.where(distinct, 0.0, -jnp.inf))
  if selection == "oracle":
    targets = ctx.window_of(ctx.targets, state)  # [B, W]
    wrong = jnp.sum(cand.commits & (cand.tokens != targets[:, None]), axis=-1)  # [B, K]
    # Fewest wrong commits first; the verifier breaks ties (scores are finite, < 1e6).
    rank_key = -wrong.astype(jnp.float32) * 1e6 + jnp.clip(score, -1e5, 1e5)
    return jnp.argmax(jnp.where(distinct, rank_key, -jnp.inf), axis=-1)
  if temperature > 0:
    return jax.vmap(jax.random.categorical)(keys, score / temperature)
  return jnp.argmax(score, axis=-1)


def select(ctx: StepContext, state: LoopState, cand: Candidates, choice_keys: jax.Array,
           temperature: float, row_choice: jax.Array, selection: str = "is",
           dedupe: bool = True) -> LoopState:
  """Commits each row's chosen candidate (importance sampling with weights
  `softmax(score / temperature)`, argmax at 0; or an oracle / random-pick control) and
  keeps its look-ahead logits as the next step's, so a step costs K forwards: one per
  distinct candidate with `dedupe`.

  `row_choice` `[B]`: rows whose K candidates can differ. A row without a choice is charged
  what its base step would cost (one forward, none if the commit finished its block), so a
  row's NFE does not depend on the rest of its batch.
  """
  batch, paths = cand.score.shape
  distinct = distinct_candidates(cand) if dedupe else jnp.ones((batch, paths), bool)
  # A row whose candidates can differ only by their sampled tokens keeps the greedy one, as
  # it would in a batch where no row branches (then the base step runs instead).
  chosen = jnp.where(row_choice, choose(ctx, state, cand, choice_keys, temperature, selection,
                                        distinct), 0)
  paths = jnp.sum(distinct, axis=-1)
  chosen_of = lambda a: jnp.take_along_axis(
      a, chosen.reshape((batch,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]
  active = ctx.active(state)
  state = ctx.commit(state, chosen_of(cand.commits), chosen_of(cand.tokens))
  forwards = jnp.where(row_choice, paths, ctx.active(state).astype(jnp.int32)) * active
  state = ctx.charge(state, forwards)
  return state.replace(logits=jnp.where(active[:, None, None], chosen_of(cand.logits),
                                        state.logits))


def branch_step(params: LookUM, ctx: StepContext, state: LoopState, view: StepView,
                row_choice: jax.Array, select_keys: jax.Array) -> LoopState:
  """One LookUM step: propose K sets, verify all K look-aheads in one call, select."""
  propose_keys, choice_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
  commits, tokens = jax.vmap(lambda v, k: propose(params, v, k))(view, propose_keys)
  cand = verify(params, ctx, state, commits, tokens)
  return select(ctx, state, cand, choice_keys, params.selection_temperature, row_choice,
                params.selection, params.dedupe)


def lookum_step(params: LookUM, ctx: StepContext, state: LoopState) -> LoopState:
  """A LookUM step, or a plain base step when not branching."""
  base = lambda s: ctx.select_step(s, lambda view, key: base_commit(params, view))
  if params.paths == 1:
    return base(state)
  if params.selection == "smc":
    return smc_step(params, ctx, state)
  # Branch only where some row has a choice: when every pool is no larger than what the
  # step commits (e.g. a block's last step), all K candidates would be the greedy set.
  noise_keys, select_keys = ctx.step_keys(state)
  view = ctx.view(state, noise_keys)
  row_choice = rows_with_choice(params, view)
  branch = jnp.any(ctx.active(state) & row_choice)
  if params.branch_every > 1:
    branch &= state.block_step % params.branch_every == 0
  return jax.lax.cond(
      branch, lambda s: branch_step(params, ctx, s, view, row_choice, select_keys), base, state)


# ---------------------------------------------------------------------- SMC

def smc_step(params: LookUM, ctx: StepContext, state: LoopState) -> LoopState:
  """One SMC step over particles (rows `b * K + j`): draw, commit, forward, reweight,
  and resample a row's particles when their effective sample size is low."""
  paths = params.paths
  noise_keys, select_keys = ctx.step_keys(state)
  propose_keys, resample_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
  view = ctx.view(state, noise_keys)
  one_draw = dataclasses.replace(params, paths=2)  # greedy set + one draw from the pool
  commits, tokens = jax.vmap(lambda v, k: propose(one_draw, v, k))(view, propose_keys)
  before = state
  active = ctx.active(state)
  drawn = jnp.ones((commits.shape[0],), bool)
  if params.smc_greedy_particle:  # particle 0 of each row follows the greedy set
    drawn = jnp.arange(commits.shape[0]) % paths != 0
  # Each particle's set: the pool draw (candidate 1), or the greedy set (candidate 0).
  particle_set = lambda a: jnp.where(drawn.reshape((-1,) + (1,) * (a.ndim - 2)), a[:, 1],
                                     a[:, 0])
  state = ctx.refresh_logits(ctx.commit(state, particle_set(commits), particle_set(tokens)))
  scope_name = params.verifier_scope
  if scope_name == "common":  # one path per particle: nothing to share
    scope_name = "masked"
  scope = verifier_scope(scope_name, ctx, before, ctx.window_masked(state)[:, None])
  score = verifier_score(params, state.logits[:, None], scope)[:, 0]
  # Rows that just finished their block have no fresh forward and nothing left to judge:
  # their weight stops changing.
  log_weight = state.strategy_state["log_weight"] + jnp.where(
      active & ctx.active(state), score / params.selection_temperature, 0.0)

  rows = log_weight.shape[0] // paths
  grouped = log_weight.reshape(rows, paths)
  weights = jax.nn.softmax(grouped, axis=-1)
  ess = 1.0 / jnp.sum(weights * weights, axis=-1)
  resample = ess < params.resample_threshold * paths
  draws = jax.vmap(lambda k, lw: jax.random.categorical(k, lw, shape=(paths,)))(
      resample_keys.reshape(rows, paths)[:, 0], grouped)
  source = jnp.where(resample[:, None], draws, jnp.arange(paths)[None])
  source = (source + paths * jnp.arange(rows)[:, None]).reshape(-1)
  cache = state.cache
  if cache is not None:
    cache = jax.tree.map(lambda a: a[:, source], cache)  # [layers, B, ...]
  state = state.replace(
      tokens=state.tokens[source], logits=state.logits[source], masked=state.masked[source],
      unmask_order=state.unmask_order[source], step_in_block=state.step_in_block[source],
      num_steps=state.num_steps[source], cache=cache)
  log_weight = jnp.where(jnp.repeat(resample, paths), 0.0, log_weight)
  return state.replace(strategy_state={"log_weight": log_weight})


def smc_decode(params: LookUM, run, model, prompt_ids, prompt_mask, key, config, **kwargs
               ) -> GenerationResult:
  """SMC around the loop: each row decoded as K particles (rows repeated, row-major, each
  with key `fold_in(row_key, j)`), then each row's heaviest particle, with the forward
  passes of all its particles."""
  from lookum_jax.sampling.loop import row_keys_from

  paths = params.paths
  batch = prompt_ids.shape[0]
  row_keys = row_keys_from(key, batch)
  keys = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(
      jnp.arange(paths)))(row_keys).reshape(-1)
  repeat = lambda a: None if a is None else jnp.repeat(a, paths, axis=0)
  result = run(model, repeat(prompt_ids), repeat(prompt_mask), keys, config, **kwargs)
  log_weight = result.strategy_state["log_weight"].reshape(batch, paths)
  best = jnp.argmax(log_weight, axis=-1) + paths * jnp.arange(batch)
  per_row = lambda a: a.reshape(batch, paths).sum(axis=-1)
  return GenerationResult(
      tokens=result.tokens[best], nfe=per_row(result.nfe), num_steps=result.num_steps[best],
      unmask_order=result.unmask_order[best], forward_tokens=per_row(result.forward_tokens),
      strategy_state={"log_weight": log_weight})

"""LookUM: Lookahead Unmasking, unmasking as path selection (brief §4).

Each branching step:
  1. *Path generator.* Candidate 0 is the set the base strategy would commit
     (greedy). Candidates 1..K-1 commit the same number of positions, drawn without
     replacement from a high-certainty pool (the top `pool_size` eligible positions
     by the base score, or those above `pool_threshold`) with probability
     proportional to `score ** (1 / proposal_temperature)` (Gumbel top-k).
  2. *Verifier.* Every candidate is committed into its own look-ahead canvas and all
     K canvases go through the model in one batched call; each is scored by its
     sequence-level certainty (default: average negative entropy over the sequence).
  3. *Selection.* Importance sampling over the K candidates with weights
     `softmax(score / selection_temperature)` (0 = argmax). The chosen canvas's
     look-ahead logits are the next step's logits: a step costs K forwards, not K + 1.

With `paths=1` the strategy is its base strategy, token for token and NFE for NFE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.sampling import scores
from lookum_jax.sampling.loop import GenerationResult, LoopState, StepContext, default_step
from lookum_jax.sampling.strategies import (
    StepView,
    Strategy,
    commit_at_least_one,
    commit_top_k,
    rank_positions,
    register_strategy,
)

# Verifier metrics: per-position certainty `[..., T]` from look-ahead logits `[..., T, V]`.
VerifierMetric = Callable[[jax.Array], jax.Array]
VERIFIER_METRICS: dict[str, VerifierMetric] = {
    "neg_entropy": lambda logits: -scores.entropy(logits),
    "confidence": scores.top1_probability,
    "margin": scores.margin,
}
BASES = ("low_confidence", "margin", "threshold")
POOLS = ("top_k", "threshold")
SCOPES = ("sequence", "response", "masked", "common", "committed", "block")
SELECTIONS = ("is", "smc")


def register_verifier(name: str, metric: VerifierMetric) -> None:
  """Adds a verifier metric: look-ahead logits `[..., T, V]` -> certainty `[..., T]`."""
  if VERIFIER_METRICS.get(name, metric) is not metric:
    raise ValueError(f"a verifier named {name!r} is already registered; choose another name.")
  VERIFIER_METRICS[name] = metric


@dataclasses.dataclass(frozen=True)
class LookUMParams:
  """LookUM options (defaults: the paper's reported setting where one is known).

  Attributes:
    paths: K candidate paths per step (1 = the base strategy exactly).
    pool_size: M, the pool of most certain eligible positions candidates draw from.
    pool: "top_k" (M most certain) or "threshold" (certainty filtering: positions
      with confidence >= pool_threshold, at least as many as a step commits).
    pool_threshold: the certainty filter's threshold.
    proposal_temperature: sharpness of the draw from the pool (score ** (1/T)).
    sample_tokens: non-greedy candidates use tokens sampled from the model's
      distribution instead of its argmax.
    base: "low_confidence", "margin" (scheduled counts) or "threshold" (Fast-dLLM
      counts; scores are confidences).
    tau: the threshold base's confidence threshold.
    verifier: a key of `VERIFIER_METRICS` ("neg_entropy", "confidence", "margin").
    verifier_scope: positions averaged: "sequence" (every real position, the
      paper's default), "response", "masked" (still masked after the candidate's
      commit: favours committing uncertain positions, which leave the average),
      "common" (masked after every candidate's commit: all candidates are judged on
      the same positions), "committed" (the positions the candidate just committed:
      does the model, seeing them in context, still agree with them?) or "block"
      (the current block).
    selection_temperature: softmax temperature of the importance weights (0 = argmax).
    branch_every: branch on every n-th step; other steps are plain base steps.
    selection: "is" (per-step importance sampling over K candidates, the paper's
      default) or "smc" (sequential Monte Carlo, the paper's ablation: K particles per
      row each commit a drawn set, accumulate log-weights score / selection_temperature,
      and are resampled within the row when the effective sample size falls below
      `resample_threshold * K`; the heaviest particle is returned).
    resample_threshold: SMC's ESS fraction that triggers resampling.
  """

  paths: int = 2
  pool_size: int = 5
  pool: str = "top_k"
  pool_threshold: float = 0.5
  proposal_temperature: float = 1.0
  sample_tokens: bool = False
  base: str = "low_confidence"
  tau: float = 0.9
  verifier: str = "neg_entropy"
  verifier_scope: str = "sequence"
  selection_temperature: float = 0.01
  branch_every: int = 1
  selection: str = "is"
  resample_threshold: float = 0.5

  def __post_init__(self):
    checks = [
        (self.paths >= 1, f"paths must be >= 1, got {self.paths}"),
        (self.pool_size >= 1, f"pool_size must be >= 1, got {self.pool_size}"),
        (self.pool in POOLS, f"pool must be one of {POOLS}, got {self.pool!r}"),
        (self.base in BASES, f"base must be one of {BASES}, got {self.base!r}"),
        (self.verifier in VERIFIER_METRICS,
         f"verifier must be one of {sorted(VERIFIER_METRICS)}, got {self.verifier!r}"),
        (self.verifier_scope in SCOPES,
         f"verifier_scope must be one of {SCOPES}, got {self.verifier_scope!r}"),
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
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f"lookum: {message}.")


def base_score(params: LookUMParams, view: StepView) -> jax.Array:
  """The base strategy's ranking score per position `[..., T]`."""
  if params.base == "margin":
    return scores.margin(view.logits)
  return view.confidence


def base_commit(params: LookUMParams, view: StepView) -> jax.Array:
  """The base strategy's (greedy) commit set for one sequence `[T]`."""
  score = base_score(params, view)
  if params.base == "threshold":
    above = (view.confidence >= params.tau) & ~view.demoted
    return commit_at_least_one(above, score, view)
  return commit_top_k(score, view, view.num_transfer)


def candidate_pool(params: LookUMParams, view: StepView) -> tuple[jax.Array, jax.Array]:
  """The positions `[T]` candidates draw from, and how many a step commits (one sequence)."""
  count = jnp.sum(base_commit(params, view))
  rank = rank_positions(base_score(params, view), view.eligible, view.demoted)
  if params.pool == "top_k":
    in_pool = rank < jnp.maximum(params.pool_size, count)
  else:
    in_pool = (view.confidence >= params.pool_threshold) | (rank < count)
  return in_pool & view.eligible, count


def propose(params: LookUMParams, view: StepView, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """K candidate commit sets `[K, T]` and their tokens `[K, T]` for one sequence."""
  greedy = base_commit(params, view)
  in_pool, count = candidate_pool(params, view)
  score = base_score(params, view)
  gumbel_key, token_key = jax.random.split(key)
  log_score = jnp.log(jnp.maximum(score, 1e-20)) / params.proposal_temperature
  # Randomness is drawn for response positions only, so a row's draws do not depend on
  # how far its batch pads prompts (see `StepView.response_start`).
  start, draws = view.response_start, params.paths - 1
  gumbel = jax.random.gumbel(gumbel_key, (draws, score.shape[-1] - start))
  gumbel = jnp.pad(gumbel, ((0, 0), (start, 0)))
  sampled = jax.vmap(
      lambda g: rank_positions(log_score + g, in_pool, view.demoted) < count)(gumbel)
  sampled &= in_pool
  commits = jnp.concatenate([greedy[None], sampled], axis=0)
  tokens = jnp.broadcast_to(view.candidates, commits.shape)
  if params.sample_tokens:  # a draw from the model's distribution, never the mask token
    response_logits = jnp.broadcast_to(view.logits[start:], (draws,) + view.logits[start:].shape)
    drawn = scores.gumbel_argmax(response_logits, 1.0, token_key, view.mask_token_id)
    tokens = tokens.at[1:, start:].set(drawn)
  return commits, tokens


def verifier_score(params: LookUMParams, logits: jax.Array, scope: jax.Array) -> jax.Array:
  """Mean certainty of look-ahead logits `[..., T, V]` over `scope` `[..., T]` -> `[...]`."""
  certainty = VERIFIER_METRICS[params.verifier](logits)
  total = jnp.sum(jnp.where(scope, certainty, 0.0), axis=-1)
  return total / jnp.maximum(jnp.sum(scope, axis=-1), 1)


def _scope(params: LookUMParams, ctx: StepContext, state: LoopState,
           lookahead_masked: jax.Array) -> jax.Array:
  """Positions the verifier averages over, `[B, K, T]`."""
  batch, paths, total = lookahead_masked.shape
  pos = jnp.arange(total)
  if params.verifier_scope == "masked":
    return lookahead_masked
  if params.verifier_scope == "common":
    return jnp.broadcast_to(jnp.all(lookahead_masked, axis=1, keepdims=True),
                            lookahead_masked.shape)
  if params.verifier_scope == "committed":
    return state.masked[:, None] & ~lookahead_masked
  if params.verifier_scope == "block":
    start = ctx.prompt_length + ctx.block_index(state.masked) * ctx.config.block_length
    block = (pos >= start[:, None]) & (pos < start[:, None] + ctx.config.block_length)
    return jnp.broadcast_to(block[:, None], (batch, paths, total))
  if params.verifier_scope == "response":
    return jnp.broadcast_to(pos >= ctx.prompt_length, (batch, paths, total))
  real = (jnp.ones((batch, total), bool) if ctx.attention_mask is None
          else ctx.attention_mask)
  return jnp.broadcast_to(real[:, None], (batch, paths, total))


@struct.dataclass
class Candidates:
  """One branching step's K candidate paths per row (shapes `[B, K, ...]`)."""

  commits: jax.Array  # [B, K, T] bool, positions each candidate commits
  tokens: jax.Array  # [B, K, T] int32, the tokens it writes there
  logits: jax.Array  # [B, K, T, V] look-ahead logits
  score: jax.Array  # [B, K] verifier score (higher = more certain)


def verify(params, ctx: StepContext, state: LoopState, commits: jax.Array,
           tokens: jax.Array) -> Candidates:
  """Scores K candidate commit sets per row (`commits`, `tokens` `[B, K, T]`) by the
  certainty of their look-ahead states, all B * K look-aheads in one model call.

  `params` needs the verifier fields of `LookUMParams` (`verifier`, `verifier_scope`); other
  path generators (e.g. a learned policy's draws) reuse the verifier through this function.
  """
  batch, paths, total = commits.shape
  commits &= (state.masked & ~state.done[:, None])[:, None]
  lookahead = jnp.where(commits, tokens, state.tokens[:, None])
  mask = None
  if ctx.attention_mask is not None:
    mask = jnp.repeat(ctx.attention_mask, paths, axis=0)
  logits = ctx.forward(lookahead.reshape(batch * paths, total), mask)
  logits = logits.reshape(batch, paths, total, -1)
  scope = _scope(params, ctx, state, state.masked[:, None] & ~commits)
  return Candidates(commits=commits, tokens=tokens, logits=logits,
                    score=verifier_score(params, logits, scope))


def score_candidates(ctx: StepContext, state: LoopState, select_keys: jax.Array,
                     noise_keys: jax.Array) -> Candidates:
  """Proposes K sets per row and verifies all B * K look-aheads in one model call."""
  params: LookUMParams = ctx.config.params
  view = ctx.view(state, noise_keys)
  commits, tokens = jax.vmap(lambda v, k: propose(params, v, k))(view, select_keys)
  return verify(params, ctx, state, commits, tokens)


def select(ctx: StepContext, state: LoopState, cand: Candidates, choice_keys: jax.Array,
           temperature: float, row_choice: jax.Array | None = None) -> LoopState:
  """Commits each row's chosen candidate (importance sampling with weights
  `softmax(score / temperature)`, argmax at 0) and keeps its look-ahead logits as the next
  step's, so a step costs K forwards.

  `row_choice` `[B]`: rows whose K candidates can differ. A row without a choice is charged
  what its base step would cost (one forward, none if the commit finished it), so a row's NFE
  does not depend on the rest of its batch.
  """
  batch, paths = cand.score.shape
  if temperature > 0:
    chosen = jax.vmap(jax.random.categorical)(choice_keys, cand.score / temperature)
  else:
    chosen = jnp.argmax(cand.score, axis=-1)
  pick = lambda a: jnp.take_along_axis(
      a, chosen.reshape((batch,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]
  active = ~state.done
  state = ctx.commit(state, pick(cand.commits), pick(cand.tokens))
  charged = paths
  if row_choice is not None:  # as a base step: a forward unless the commit finished the row
    charged = jnp.where(row_choice, paths, (~state.done).astype(jnp.int32))
  return state.replace(
      logits=jnp.where(active[:, None, None], pick(cand.logits), state.logits),
      nfe=state.nfe + charged * ctx.forward_cost * active.astype(jnp.int32))


def branch_step(ctx: StepContext, state: LoopState,
                row_choice: jax.Array | None = None) -> LoopState:
  """One LookUM step: propose K sets, verify all K look-aheads in one call, select.

  `row_choice` `[B]` (`rows_with_choice`) when the caller has it already.
  """
  params: LookUMParams = ctx.config.params
  noise_keys, select_keys = ctx.step_keys(state)
  propose_keys, choice_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
  cand = score_candidates(ctx, state, propose_keys, noise_keys)
  if row_choice is None:
    row_choice = rows_with_choice(params, ctx.view(state, noise_keys))
  return select(ctx, state, cand, choice_keys, params.selection_temperature, row_choice)


def smc_step(ctx: StepContext, state: LoopState) -> LoopState:
  """One SMC step over particles (rows `b * K + j`): draw, commit, forward, reweight,
  and resample a row's particles when their effective sample size is low."""
  params: LookUMParams = ctx.config.params
  paths = params.paths
  noise_keys, select_keys = ctx.step_keys(state)
  propose_keys, resample_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
  view = ctx.view(state, noise_keys)
  one_draw = dataclasses.replace(params, paths=2)  # greedy set + one draw from the pool
  commits, tokens = jax.vmap(lambda v, k: propose(one_draw, v, k))(view, propose_keys)
  before = state
  active = ~state.done
  state = ctx.refresh_logits(ctx.commit(state, commits[:, 1], tokens[:, 1]))
  scope_params = params
  if params.verifier_scope == "common":  # one path per particle: nothing to share
    scope_params = dataclasses.replace(params, verifier_scope="masked")
  scope = _scope(scope_params, ctx, before, state.masked[:, None])
  score = verifier_score(params, state.logits[:, None], scope)[:, 0]
  # Rows that just finished have no fresh forward (the loop skips it once all are done)
  # and nothing left to judge: their weight stops changing.
  log_weight = state.strategy_state["log_weight"] + jnp.where(
      active & ~state.done, score / params.selection_temperature, 0.0)

  rows = log_weight.shape[0] // paths
  grouped = log_weight.reshape(rows, paths)
  weights = jax.nn.softmax(grouped, axis=-1)
  ess = 1.0 / jnp.sum(weights * weights, axis=-1)
  resample = ess < params.resample_threshold * paths
  draws = jax.vmap(lambda k, lw: jax.random.categorical(k, lw, shape=(paths,)))(
      resample_keys.reshape(rows, paths)[:, 0], grouped)
  source = jnp.where(resample[:, None], draws, jnp.arange(paths)[None])
  source = (source + paths * jnp.arange(rows)[:, None]).reshape(-1)
  take = lambda a: a[source]
  state = state.replace(
      tokens=take(state.tokens), logits=take(state.logits), masked=take(state.masked),
      unmask_order=take(state.unmask_order), step_in_block=take(state.step_in_block),
      num_steps=take(state.num_steps), done=take(state.done))
  log_weight = jnp.where(jnp.repeat(resample, paths), 0.0, log_weight)
  return state.replace(strategy_state={"log_weight": log_weight})


def lookum_step(ctx: StepContext, state: LoopState) -> LoopState:
  """A LookUM step, or a plain base step when not branching."""
  params: LookUMParams = ctx.config.params
  base = lambda s: default_step(ctx, s, lambda view, key: base_commit(params, view))
  if params.paths == 1:
    return base(state)
  if params.selection == "smc":
    return smc_step(ctx, state)
  # Branch only where some row has a choice: when every pool is no larger than what the
  # step commits (e.g. a block's last step), all K candidates would be the greedy set.
  noise_keys, _ = ctx.step_keys(state)
  row_choice = rows_with_choice(params, ctx.view(state, noise_keys))
  branch = jnp.any(~state.done & row_choice)
  if params.branch_every > 1:
    branch &= state.iteration % params.branch_every == 0
  return jax.lax.cond(branch, lambda s: branch_step(ctx, s, row_choice), base, state)


def rows_with_choice(params: LookUMParams, view: StepView) -> jax.Array:
  """`[B]`: rows whose pool holds more positions than their step commits (otherwise every
  candidate is the greedy set)."""
  in_pool, count = jax.vmap(lambda v: candidate_pool(params, v))(view)
  return jnp.sum(in_pool, axis=-1) > count


def _init_state(batch: int, total: int, params: LookUMParams):
  del total
  if params.selection == "smc":
    return {"log_weight": jnp.zeros((batch,), jnp.float32)}
  return None


def _finalize(result: GenerationResult, params: LookUMParams) -> GenerationResult:
  """SMC: each row's heaviest particle, with the forward passes of all its particles."""
  if params.selection != "smc":
    return result
  paths = params.paths
  log_weight = result.strategy_state["log_weight"]
  rows = log_weight.shape[0] // paths
  best = jnp.argmax(log_weight.reshape(rows, paths), axis=-1) + paths * jnp.arange(rows)
  return GenerationResult(
      tokens=result.tokens[best], nfe=result.nfe.reshape(rows, paths).sum(axis=-1),
      num_steps=result.num_steps[best], unmask_order=result.unmask_order[best],
      strategy_state={"log_weight": log_weight.reshape(rows, paths)})


LOOKUM = register_strategy(Strategy(
    name="lookum", params_type=LookUMParams,
    uses_schedule=lambda params: params.base != "threshold", step=lookum_step,
    init_state=_init_state, finalize=_finalize,
    particles=lambda params: params.paths if params.selection == "smc" else 1))

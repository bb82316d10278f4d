"""`policy_lookum`: the learned policy proposes, LookUM's verifier selects.

Each step the policy gives every eligible position an unmask probability p (as in the
`policy` strategy). K candidate commit sets are built from it:

  * candidate 0 is the policy's deterministic action (commit where p >= 1/2);
  * candidates 1..K-1 are independent Bernoulli draws with probability `min(1, beta * p)`;

each falling back to the most confident eligible position when empty, so decoding always
progresses. All K look-ahead canvases go through the model in one batched call and are
scored by the LookUM verifier (`lookum_jax.sampling.verifier.Verifier`); the most certain one is
kept (or one drawn with weights `softmax(score / selection_temperature)`), and its look-ahead
logits are the next step's, so a step costs K forwards. Steps where no unfinished row has two
eligible positions cannot differ between candidates: they run the deterministic action with
one forward.

With `paths=1` this is the `policy` strategy in "deterministic" mode, token for token and NFE
for NFE. The value carries the policy (`PolicyLookUM(...).with_policy(module)`), as the
`policy` strategy does; it sees the loop's window of response positions (see
`policy_rl.strategy`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from lookum_jax.sampling import scores
from lookum_jax.sampling.lookum import ImportanceSampling, keep_chosen
from lookum_jax.sampling.strategies import commit_at_least_one
from lookum_jax.sampling.types import (
    LoopState,
    StepContext,
    check_number,
    pytree_dataclass,
    static_field,
)
from lookum_jax.sampling.verifier import Verifier
from policy_rl.features import DEFAULT_FEATURES, validate_features
from policy_rl.strategy import (
  CarriesPolicy,
  Policy,
  SteeredPolicy,
  policy_and_expert_rows,
  policy_inputs,
  unmask_probability,
)


@pytree_dataclass
class PolicyLookUM(CarriesPolicy):
  """Options of `policy_lookum`.

  Attributes:
    paths: K candidate sets per step (1 = the deterministic policy exactly).
    beta: the draws' test-time scaling, Bernoulli(min(1, beta * p)).
    temperature: p = sigmoid(policy logit / temperature).
    features: the policy's input features; must equal the policy's `config.features`.
    verifier: the `Verifier` LookUM uses (default scope "common": candidates of different
      sizes are judged on the positions none of them commits, so a candidate is not
      favoured for removing uncertain positions from the average; on toy-sudoku the
      paper's "sequence" scope lost to greedy, `experiments/README.md`, LookUM section).
    selection_temperature: softmax temperature of the importance weights (0 = argmax).
    dedupe: candidates identical to an earlier one are dropped and cost no NFE.
    graphdef, weights: the policy module, split (set by `with_policy`).

  Its JSON form names the verifier flat, as LookUM's does (`verifier`, `verifier_scope`,
  `entropy_cost`).
  """

  name = "policy_lookum"
  # The at-least-one fallback ranks by certainty; the verifier's entropy_cost reads entropy.
  reads = frozenset({"certainty", "entropy"})
  paths: int = static_field(2)
  beta: float = 1.0
  temperature: float = 1.0
  features: tuple[str, ...] = static_field(DEFAULT_FEATURES)
  verifier: Verifier = Verifier()
  selection_temperature: float = 0.0
  dedupe: bool = static_field(True)
  graphdef: Any = static_field(None, repr=False)
  weights: Any = dataclasses.field(default=None, repr=False, compare=False)

  def __post_init__(self):
    try:
      if self.paths < 1:
        raise ValueError(f"paths must be >= 1, got {self.paths}")
      check_number("beta", "", self.beta, lambda v: v > 0, "> 0")
      check_number("temperature", "", self.temperature, lambda v: v > 0, "> 0")
      check_number("selection_temperature", "", self.selection_temperature,
                   lambda v: v >= 0, ">= 0")
      if not isinstance(self.verifier, Verifier):
        raise ValueError(f"verifier must be a Verifier value, got {self.verifier!r}")
    except ValueError as error:
      raise ValueError(f"policy_lookum: {str(error).rstrip('.')}.") from None
    object.__setattr__(self, "features",
                       validate_features(self.features, "policy_lookum features"))

  @classmethod
  def param_names(cls) -> tuple[str, ...]:
    return (*super().param_names(), "verifier_scope", "entropy_cost")

  @classmethod
  def param_types(cls) -> dict[str, Any]:
    """The flat JSON form's types: the verifier by name."""
    return {**super().param_types(), "verifier": str, "verifier_scope": str,
            "entropy_cost": float}

  @classmethod
  def from_params(cls, params: dict[str, Any]) -> PolicyLookUM:
    """The value of flat parameters (`verifier`, `verifier_scope`, `entropy_cost` by name)."""
    params = dict(params)
    flat = {k: params.pop(k) for k in ("verifier", "verifier_scope", "entropy_cost")
            if k in params}
    if not isinstance(flat.get("verifier"), Verifier):
      try:
        flat["verifier"] = Verifier(flat.get("verifier", "neg_entropy"),
                                    flat.get("verifier_scope", "common"),
                                    flat.get("entropy_cost", 0.0))
      except ValueError as error:
        raise ValueError(f"policy_lookum: {error}") from None
    return cls(verifier=flat["verifier"], **params)

  def to_dict(self) -> dict[str, Any]:
    out = super().to_dict()
    del out["verifier"]
    return {**out, **self.verifier.to_dict()}

  @property
  def uses_schedule(self) -> bool:
    return False

  def with_policy(self, policy: Any) -> PolicyLookUM:
    if isinstance(policy, SteeredPolicy):
      raise ValueError(
          "strategy 'policy_lookum' does not follow an expert: pass the UnmaskingPolicy itself "
          "as policy (SteeredPolicy is for GRPO rollouts of strategy 'policy').")
    return super().with_policy(policy)

  def step(self, ctx, state):
    return policy_lookum_step(self, ctx, state)

  def policy_params(self, mode: str) -> Policy:
    return Policy(mode=mode, beta=self.beta, temperature=self.temperature,
                  features=self.features)


def _unmask_probabilities(ctx: StepContext, state: LoopState, view, params: PolicyLookUM
                          ) -> tuple[jax.Array, jax.Array]:
  """`(p, beta-scaled p)` of every window position `[B, W]` under the policy."""
  policy, _ = policy_and_expert_rows(params.policy_module(),
                                     params.policy_params("deterministic"),
                                     state.tokens.shape[0], strategy="policy_lookum")
  logits = policy(policy_inputs(ctx, state, view))
  return (unmask_probability(params.policy_params("deterministic"), logits),
          unmask_probability(params.policy_params("scaled"), logits))


def policy_lookum_step(params: PolicyLookUM, ctx: StepContext, state: LoopState) -> LoopState:
  """One step: the policy's K candidate sets, verified in one batched forward, one kept; a
  plain deterministic step when no unfinished row has two eligible positions."""
  noise_keys, step_keys = ctx.step_keys(state)
  draw_keys, choice_keys = jax.vmap(jax.random.split, out_axes=1)(step_keys)
  view = ctx.view(state, noise_keys)
  p, scaled = _unmask_probabilities(ctx, state, view, params)
  at_least_one = jax.vmap(jax.vmap(commit_at_least_one, in_axes=(0, None, None)))
  greedy = jax.vmap(commit_at_least_one)(p >= 0.5, view.certainty, view)
  row_choice = jnp.sum(view.eligible, axis=-1) >= 2  # one eligible position: no choice

  def plain(state: LoopState) -> LoopState:
    return ctx.refresh_logits(ctx.commit(state, greedy, view.candidates))

  def branch(state: LoopState) -> LoopState:
    draws = params.paths - 1
    uniform = jax.vmap(lambda k, pos: jax.vmap(
        lambda d: scores.position_uniform(jax.random.fold_in(k, d), pos))(jnp.arange(draws)))(
            draw_keys, view.positions)  # [B, K - 1, W]
    drawn = at_least_one(uniform < scaled[:, None], view.certainty, view)
    commits = jnp.concatenate([greedy[:, None], drawn], axis=1)
    tokens = jnp.broadcast_to(view.candidates[:, None], commits.shape)
    cand = params.verifier.verify(ctx, state, commits, tokens)
    return keep_chosen(ctx, state, cand, ImportanceSampling(params.selection_temperature),
                       choice_keys, row_choice, params.dedupe)

  if params.paths == 1:
    return plain(state)
  return jax.lax.cond(jnp.any(ctx.active(state) & row_choice), branch, plain, state)

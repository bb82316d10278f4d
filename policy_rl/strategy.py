"""The `policy` strategy: a learned policy decides which masked positions to commit.

Each forward's logits give the policy's input (`policy_rl.features`, computed right after the
forward and carried to the step: `CarriesPolicy.observe`); the policy gives a
logit per position, and every masked position of the current block (eligible) is unmasked
independently with probability `sigmoid(logit / temperature)` (mode "sample"), that
probability scaled to `min(1, beta * p)` ("scaled", test-time scaling), or when it is at least
1/2 ("deterministic"). If nothing is drawn the most confident eligible position is committed,
so decoding always progresses. The policy decides the counts: `uses_schedule=False`, a block
lasts until committed and a generation takes at most `gen_length` steps.

The policy sees the loop's window of response positions (the whole response without a KV
cache, the current block with one; never the prompt, whose dLLM outputs are untrained): its
token features and mask flags cover those positions only, and its attention and RoPE positions
run over the window. Positions outside the block under a cache are not shown to it.

The strategy value carries the policy: `Policy(mode=...).with_policy(module)` (or
`Policy.load(DIR)`) holds its graph definition (static) and weights (traced), so a new
checkpoint of the same architecture reuses the compiled program. Wrap the module in
`SteeredPolicy` to let chosen rows follow the confidence-threshold expert instead (mode
"expert" steers every row). Expert actions are recorded like the policy's.

Carried state (`PolicyState`): the summed log-probability of the actions taken, per row, and
with `record=True` a `Trajectory` of each step's policy input and actions, enough to recompute
the actions' log-probability under new policy parameters (the dLLM is frozen, so the visited
states do not depend on them). The recorded action is the Bernoulli draw itself: the
at-least-one fallback is a deterministic function of the state and an empty draw.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from lookum_jax.sampling import scores
from lookum_jax.sampling.strategies import Strategy, commit_at_least_one
from lookum_jax.sampling.strategies.rules import Threshold
from lookum_jax.sampling.types import (
    LoopState,
    StepContext,
    check_number,
    check_unit_interval,
    pytree_dataclass,
    static_field,
)
from policy_rl.features import (
    DEFAULT_FEATURES,
    PolicyInput,
    policy_input,
    token_features,
    validate_features,
)
from policy_rl.policy import UnmaskingPolicy, load_policy

MODES = ("sample", "deterministic", "scaled", "expert")
# Keeps log(1 - p) finite (and its gradient free of NaN) where scaling saturates p at 1.
_MAX_SCALED_PROB = 1.0 - 1e-6


class CarriesPolicy(Strategy):
  """A strategy that reads a learned policy, which the value carries: `graphdef` (static,
  the architecture) and `weights` (traced leaves)."""

  needs_policy = True

  def observe(self, ctx, logits):
    """The policy's token features of each forward (`features.token_features`), carried to
    the next step instead of the logits."""
    return token_features(self.features, logits, banned_token=ctx.mask_token_id)

  @classmethod
  def load(cls, directory: str | os.PathLike, **params: Any) -> Strategy:
    """The strategy with `params`, reading the policy saved in `directory`."""
    return cls(**params).with_policy(load_policy(directory))

  def with_policy(self, policy: Any) -> Strategy:
    """This strategy reading `policy` (an `UnmaskingPolicy`, or a `SteeredPolicy`)."""
    module = policy.policy if isinstance(policy, SteeredPolicy) else policy
    if not isinstance(module, UnmaskingPolicy):
      raise ValueError(
          f"strategy {self.name!r} needs the learned policy: a policy_rl.UnmaskingPolicy (or "
          f"a SteeredPolicy), got {type(policy).__name__}.")
    check_features(module, self.features)
    graphdef, weights = nnx.split(policy)
    return dataclasses.replace(self, graphdef=graphdef, weights=weights)

  def check_ready(self) -> None:
    if self.graphdef is None:
      raise ValueError(
          f"strategy {self.name!r} needs the learned policy: build the value with it, "
          f"{type(self).__name__}(...).with_policy(policy_rl.load_policy(DIR)) or "
          "SamplerConfig.with_policy(policy).")

  def policy_module(self) -> nnx.Module:
    """The policy (or `SteeredPolicy`) module, rebuilt from the carried weights."""
    self.check_ready()
    return nnx.merge(self.graphdef, self.weights)

  def to_dict(self) -> dict[str, Any]:
    """The parameters; the weights are not part of the JSON form."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("graphdef", "weights")}

  @classmethod
  def param_names(cls) -> tuple[str, ...]:
    return tuple(n for n in super().param_names() if n not in ("graphdef", "weights"))


@pytree_dataclass
class Policy(CarriesPolicy):
  """The learned-policy strategy; it carries the policy (`with_policy`, `load`).

  Attributes:
    mode: "sample" (Bernoulli(p)), "deterministic" (p >= 0.5), "scaled" (Bernoulli(min(1,
      beta * p))) or "expert" (every row follows the confidence-threshold rule).
    beta: the "scaled" mode's factor.
    temperature: p = sigmoid(logit / temperature).
    features: the policy's input features; must equal the policy's `config.features`.
    expert_tau: the threshold expert commits eligible positions with confidence >= this.
    record: carry a per-step `Trajectory` (for GRPO; costs memory `[B, T, T, F]`).
    graphdef, weights: the policy module, split (set by `with_policy`).
  """

  name = "policy"
  # The at-least-one fallback ranks by certainty; the threshold expert reads confidence.
  reads = frozenset({"certainty", "confidence"})
  mode: str = static_field("sample")
  beta: float = 1.0
  temperature: float = 1.0
  features: tuple[str, ...] = static_field(DEFAULT_FEATURES)
  expert_tau: float = 0.9
  record: bool = static_field(False)
  graphdef: Any = static_field(None, repr=False)
  weights: Any = dataclasses.field(default=None, repr=False, compare=False)

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"policy mode must be one of {MODES}, got {self.mode!r}.")
    check_number("policy", "beta", self.beta, lambda v: v > 0, "> 0")
    check_number("policy", "temperature", self.temperature, lambda v: v > 0, "> 0")
    check_unit_interval("policy", "expert_tau", self.expert_tau)
    if not isinstance(self.record, bool):
      raise ValueError(f"policy record must be a bool, got {self.record!r}.")
    object.__setattr__(self, "features", validate_features(self.features, "policy features"))

  @property
  def uses_schedule(self) -> bool:
    return False

  def init_state(self, ctx, batch_size):
    return init_state(batch_size, ctx.config.max_steps, ctx.window_length, self)

  def step(self, ctx, state):
    return policy_step(self, ctx, state)


PolicyParams = Policy  # the strategy value is its parameters


@struct.dataclass
class Trajectory:
  """Per-step records of a generation; step axis S (rows past a row's last step are invalid).

  Attributes:
    token_features: `[B, S, T, F]` float32 policy input features.
    masked: `[B, S, T]` bool, masked positions before the step.
    time: `[B, S]` float32 policy time input.
    eligible: `[B, S, T]` bool, positions the step could commit (masked, current block).
    actions: `[B, S, T]` bool, the drawn (or expert) unmask decisions, within `eligible`.
    valid: `[B, S]` bool, the row took this step.
  """

  token_features: jax.Array
  masked: jax.Array
  time: jax.Array
  eligible: jax.Array
  actions: jax.Array
  valid: jax.Array

  @property
  def num_steps(self) -> int:
    return self.valid.shape[1]

  def truncate(self, num_steps: int) -> Trajectory:
    """The first `num_steps` steps (enough when no row took more)."""
    return jax.tree.map(lambda x: x[:, :num_steps], self)

  def step_inputs(self) -> PolicyInput:
    """The policy inputs of every step, flattened to a batch `[B * S, ...]`."""
    b, s, t, f = self.token_features.shape
    return PolicyInput(token_features=self.token_features.reshape(b * s, t, f),
                       masked=self.masked.reshape(b * s, t), time=self.time.reshape(b * s))


@struct.dataclass
class PolicyState:
  """The strategy's carried state: `log_prob [B]`, and the trajectory when recording."""

  log_prob: jax.Array
  trajectory: Trajectory | None = None


class SteeredPolicy(nnx.Module):
  """A policy plus `expert_rows [B]` bool: those rows follow the threshold expert."""

  def __init__(self, policy: UnmaskingPolicy, expert_rows: jax.Array):
    self.policy = policy
    self.expert_rows = nnx.Variable(jnp.asarray(expert_rows, bool))


def bernoulli_log_probs(params: Policy, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(log p, log(1 - p))` of the unmask probability each position is drawn with.

  "deterministic" and "expert" actions are scored under the "sample" distribution.
  """
  z = logits.astype(jnp.float32) / params.temperature
  log_p, log_not_p = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
  if params.mode == "scaled":
    log_p = jnp.minimum(log_p + jnp.log(params.beta), 0.0)
    log_not_p = jnp.log1p(-jnp.minimum(jnp.exp(log_p), _MAX_SCALED_PROB))
  return log_p, log_not_p


def unmask_probability(params: Policy, logits: jax.Array) -> jax.Array:
  return jnp.exp(bernoulli_log_probs(params, logits)[0])


def position_log_probs(params: Policy, logits: jax.Array, actions: jax.Array,
                       eligible: jax.Array) -> jax.Array:
  """Log-probability `[..., T]` of each eligible position's decision (0 elsewhere)."""
  log_p, log_not_p = bernoulli_log_probs(params, logits)
  return jnp.where(eligible, jnp.where(actions, log_p, log_not_p), 0.0)


def action_log_prob(params: Policy, logits: jax.Array, actions: jax.Array,
                    eligible: jax.Array) -> jax.Array:
  """Log-probability `[...]` of a step's joint action over the eligible positions."""
  return jnp.sum(position_log_probs(params, logits, actions, eligible), axis=-1)


def check_features(policy: UnmaskingPolicy, features: tuple[str, ...]) -> None:
  """Raises ValueError when `policy` was built for other input features than the strategy's
  (`features`), naming the params that match it."""
  if policy.config.features != features:
    raise ValueError(
        f"the policy was built for features {policy.config.features} but the strategy's params "
        f"give {features}; set params={{'features': {policy.config.features}}}.")


def policy_and_expert_rows(policy_module, params: Policy, batch: int, strategy: str = "policy"
                           ) -> tuple[UnmaskingPolicy, jax.Array]:
  """The carried policy and the rows `[B]` that follow the expert instead."""
  if isinstance(policy_module, SteeredPolicy):
    policy, expert_rows = policy_module.policy, policy_module.expert_rows[...]
    if expert_rows.shape != (batch,):
      raise ValueError(
          f"SteeredPolicy.expert_rows must have shape ({batch},) (one flag per row), got "
          f"{expert_rows.shape}.")
  elif isinstance(policy_module, UnmaskingPolicy):
    policy, expert_rows = policy_module, jnp.zeros((batch,), bool)
  else:
    raise ValueError(
        f"strategy {strategy!r} needs the learned policy: pass .with_policy(policy) "
        f"with a policy_rl.UnmaskingPolicy (or a SteeredPolicy), got "
        f"{type(policy_module).__name__}.")
  check_features(policy, params.features)
  if params.mode == "expert":
    expert_rows = jnp.ones((batch,), bool)
  return policy, expert_rows


def init_state(batch_size: int, num_steps: int, window: int, params: Policy) -> PolicyState:
  """Zero log-probabilities; with `record`, empty buffers of `num_steps` steps over the
  loop's window of `window` positions (truncate to the steps taken)."""
  trajectory = None
  if params.record:
    f = len(params.features)
    flags = jnp.zeros((batch_size, num_steps, window), bool)
    trajectory = Trajectory(
        token_features=jnp.zeros((batch_size, num_steps, window, f), jnp.float32),
        masked=flags, time=jnp.zeros((batch_size, num_steps), jnp.float32), eligible=flags,
        actions=flags, valid=jnp.zeros((batch_size, num_steps), bool))
  return PolicyState(log_prob=jnp.zeros((batch_size,), jnp.float32), trajectory=trajectory)


def _record(trajectory: Trajectory, index: jax.Array, active: jax.Array, inputs: PolicyInput,
            eligible: jax.Array, actions: jax.Array) -> Trajectory:
  """Writes each active row's step at its own step index `index [B]` (inactive rows write
  nothing)."""
  rows = jnp.arange(index.shape[0])
  slot = jnp.where(active, index, trajectory.valid.shape[1])  # out of range: dropped
  write = lambda buffer, x: buffer.at[rows, slot].set(x, mode="drop")
  return Trajectory(
      token_features=write(trajectory.token_features, inputs.token_features),
      masked=write(trajectory.masked, inputs.masked), time=write(trajectory.time, inputs.time),
      eligible=write(trajectory.eligible, eligible), actions=write(trajectory.actions, actions),
      valid=write(trajectory.valid, active))


def policy_inputs(ctx: StepContext, state: LoopState, view) -> PolicyInput:
  """The policy's observation of the window at this step: the token features the loop
  computed after the forward (`CarriesPolicy.observe`)."""
  return policy_input(view.observed, view.masked, state.num_steps, ctx.config.gen_length)


def policy_step(params: Policy, ctx: StepContext, state: LoopState) -> LoopState:
  """One step: features, policy, Bernoulli draws (or the expert), at-least-one, forward."""
  batch = state.tokens.shape[0]
  policy, expert_rows = policy_and_expert_rows(params.policy_module(), params, batch)
  noise_keys, draw_keys = ctx.step_keys(state)
  view = ctx.view(state, noise_keys)
  inputs = policy_inputs(ctx, state, view)
  logits = policy(inputs)  # [B, W]
  if params.mode == "deterministic":
    drawn = unmask_probability(params, logits) >= 0.5
  else:
    uniform = jax.vmap(scores.position_uniform)(draw_keys, view.positions)
    drawn = uniform < unmask_probability(params, logits)
  expert = jax.vmap(Threshold(tau=params.expert_tau).above)(view)
  actions = jnp.where(expert_rows[:, None], expert, drawn) & view.eligible
  commit = jax.vmap(commit_at_least_one)(actions, view.certainty, view)
  active = ctx.active(state)
  step_log_prob = action_log_prob(params, logits, actions, view.eligible)
  carried: PolicyState = state.strategy_state
  trajectory = carried.trajectory
  if trajectory is not None:
    trajectory = _record(trajectory, state.num_steps, active, inputs, view.eligible, actions)
  carried = PolicyState(log_prob=carried.log_prob + jnp.where(active, step_log_prob, 0.0),
                        trajectory=trajectory)
  state = ctx.commit(state, commit, view.candidates).replace(strategy_state=carried)
  return ctx.refresh_logits(state)

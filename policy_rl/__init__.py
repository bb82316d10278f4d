"""Learned unmasking policies for masked diffusion LMs, trained with GRPO.

Strategies: `Policy` (the policy's Bernoulli unmask decisions) and `PolicyLookUM` (the policy
proposes, LookUM's verifier selects), values that carry the policy's weights
(`Policy(...).with_policy(module)`); by name, "policy" and "policy_lookum", once
`register_strategies()` has added them to the parser (`lookum_jax.parsing`): the edges that
offer names (the CLI, lm-eval's bridge, benchmark configs and presets) call it.
"""

from policy_rl.features import TOKEN_FEATURES, PolicyInput, compute_features
from policy_rl.lookum import PolicyLookUM
from policy_rl.policy import (
  PolicyConfig,
  UnmaskingPolicy,
  init_policy,
  load_policy,
  num_params,
  save_policy,
)
from policy_rl.strategy import (
  MODES,
  Policy,
  PolicyParams,
  PolicyState,
  SteeredPolicy,
  Trajectory,
  action_log_prob,
  position_log_probs,
  unmask_probability,
)


def register_strategies() -> None:
  """Adds "policy" and "policy_lookum" to the parser's strategy names (idempotent), so the
  library's parser never names `policy_rl`."""
  from lookum_jax.parsing import register_strategy

  register_strategy("policy", Policy)
  register_strategy("policy_lookum", PolicyLookUM)


__all__ = [
    "MODES", "TOKEN_FEATURES", "PolicyConfig", "PolicyInput", "Policy", "PolicyLookUM",
    "PolicyParams", "PolicyState",
    "SteeredPolicy", "Trajectory", "UnmaskingPolicy", "action_log_prob", "compute_features",
    "init_policy", "load_policy", "num_params", "position_log_probs", "register_strategies",
    "save_policy",
    "unmask_probability",
]

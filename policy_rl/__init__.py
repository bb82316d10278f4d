"""Learned unmasking policies for masked diffusion LMs, trained with GRPO.

Strategies: `Policy` (the policy's Bernoulli unmask decisions) and `PolicyLookUM` (the policy
proposes, LookUM's verifier selects), values that carry the policy's weights
(`Policy(...).with_policy(module)`); by name, "policy" and "policy_lookum", registered with
the parser (`lookum_jax.parsing`) at the command-line edge.
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

__all__ = [
    "MODES", "TOKEN_FEATURES", "PolicyConfig", "PolicyInput", "Policy", "PolicyLookUM",
    "PolicyParams", "PolicyState",
    "SteeredPolicy", "Trajectory", "UnmaskingPolicy", "action_log_prob", "compute_features",
    "init_policy", "load_policy", "num_params", "position_log_probs", "save_policy",
    "unmask_probability",
]

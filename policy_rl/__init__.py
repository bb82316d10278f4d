"""Learned unmasking policies for masked diffusion LMs, trained with GRPO.

Importing the package registers the `policy` and `policy_lookum` (the policy proposes,
LookUM's verifier selects) sampling strategies with `lookum_jax`.
"""

from policy_rl.features import TOKEN_FEATURES, PolicyInput, compute_features
from policy_rl.lookum import PolicyLookUMParams
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
    PolicyParams,
    PolicyState,
    SteeredPolicy,
    Trajectory,
    action_log_prob,
    position_log_probs,
    unmask_probability,
)

__all__ = [
    "MODES", "TOKEN_FEATURES", "PolicyConfig", "PolicyInput", "PolicyLookUMParams",
    "PolicyParams", "PolicyState",
    "SteeredPolicy", "Trajectory", "UnmaskingPolicy", "action_log_prob", "compute_features",
    "init_policy", "load_policy", "num_params", "position_log_probs", "save_policy",
    "unmask_probability",
]

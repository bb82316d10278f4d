"""The sampling engine: one jit-compiled unmasking loop and the strategies it runs."""

from lookum_jax.sampling import lookum, strategies
from lookum_jax.sampling.config import CACHE_MODES, SamplerConfig
from lookum_jax.sampling.lookum import (
    SMC,
    AboveThreshold,
    Argmax,
    Eligible,
    ImportanceSampling,
    LookUM,
    Oracle,
    Proposal,
    RandomPick,
    TopK,
)
from lookum_jax.sampling.loop import GenerationResult, check_generation, decode, generate
from lookum_jax.sampling.strategies import (
    Entropy,
    EntropyBounded,
    LowConfidence,
    Margin,
    RandomOrder,
    Rule,
    Strategy,
    Threshold,
)
from lookum_jax.sampling.types import LoopState, StepContext, StepView, pytree_dataclass
from lookum_jax.sampling.verifier import Verifier

__all__ = [
    "CACHE_MODES", "SMC", "AboveThreshold", "Argmax", "Eligible", "Entropy", "EntropyBounded",
    "GenerationResult", "ImportanceSampling", "LookUM", "LoopState", "LowConfidence",
    "Margin", "Oracle", "Proposal", "RandomOrder", "RandomPick", "Rule", "SamplerConfig",
    "StepContext", "StepView", "Strategy", "Threshold", "TopK", "Verifier",
    "check_generation", "decode", "generate", "lookum", "pytree_dataclass",
    "strategies",
]

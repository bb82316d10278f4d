"""The sampling engine: one jit-compiled unmasking loop and the strategies it runs."""

from lookum_jax.sampling import lookum, strategies
from lookum_jax.sampling.cache import CACHE_MODES, CacheMode, DualCache, NoCache, PrefixCache
from lookum_jax.sampling.config import SamplerConfig
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
from lookum_jax.sampling.refresh import (
    AdaptiveRefresh,
    BlockStart,
    FullStart,
    PeriodicRefresh,
    VicinityStart,
)
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
    "CACHE_MODES", "SMC", "AboveThreshold", "AdaptiveRefresh", "Argmax", "BlockStart",
    "CacheMode", "DualCache", "Eligible", "Entropy", "EntropyBounded", "FullStart",
    "GenerationResult", "ImportanceSampling", "LookUM", "LoopState", "LowConfidence",
    "Margin", "NoCache", "Oracle", "PeriodicRefresh", "PrefixCache", "Proposal",
    "RandomOrder", "RandomPick", "Rule", "SamplerConfig", "VicinityStart",
    "StepContext", "StepView", "Strategy", "Threshold", "TopK", "Verifier",
    "check_generation", "decode", "generate", "lookum", "pytree_dataclass",
    "strategies",
]

"""The sampling engine: one jit-compiled unmasking loop and the strategies it runs."""

from lookum_jax.sampling import lookum, strategies
from lookum_jax.sampling.config import CACHE_MODES, SamplerConfig
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.sampling.loop import (
    GenerationResult,
    LoopState,
    StepContext,
    check_generation,
    decode,
    generate,
)
from lookum_jax.sampling.strategies import (
    Entropy,
    EntropyBounded,
    LowConfidence,
    Margin,
    RandomOrder,
    Strategy,
    Threshold,
    make_strategy,
)

__all__ = [
    "CACHE_MODES", "Entropy", "EntropyBounded", "GenerationResult", "LookUM", "LoopState",
    "LowConfidence", "Margin", "RandomOrder", "SamplerConfig", "StepContext", "Strategy",
    "Threshold", "check_generation", "decode", "generate", "lookum", "make_strategy",
    "strategies",
]

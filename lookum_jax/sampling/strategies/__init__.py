"""Unmasking strategies as values (`LowConfidence()`, `Threshold(tau=0.9)`, `LookUM(paths=2)`);
names exist only at the edge, in `lookum_jax.parsing`."""

from __future__ import annotations

from lookum_jax.sampling.strategies.base import (
    StepView,
    Strategy,
    commit_at_least_one,
    commit_top_k,
    pytree_dataclass,
    rank_positions,
    static_field,
)
from lookum_jax.sampling.strategies.rules import (
    Entropy,
    EntropyBounded,
    LowConfidence,
    Margin,
    RandomOrder,
    Rule,
    Threshold,
)

__all__ = [
    "Entropy", "EntropyBounded", "LowConfidence", "Margin", "RandomOrder",
    "Rule", "StepView", "Strategy", "Threshold", "commit_at_least_one", "commit_top_k",
    "pytree_dataclass", "rank_positions", "static_field",
]

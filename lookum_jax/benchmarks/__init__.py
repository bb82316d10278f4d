"""Real-model benchmarks (GSM8K, MATH500, HumanEval, MBPP, Countdown, Sudoku) and the runner
that evaluates any sampler on them, sharded and resumable (`lookum bench`)."""

from lookum_jax.benchmarks.base import Benchmark, Score
from lookum_jax.benchmarks.config import BenchmarkConfig, apply_overrides, load_config
from lookum_jax.benchmarks.registry import BENCHMARKS, benchmark_names, get_benchmark
from lookum_jax.benchmarks.sandbox import ExecutionResult, run_program, run_programs

__all__ = [
    "BENCHMARKS", "Benchmark", "BenchmarkConfig", "ExecutionResult", "Score", "apply_overrides",
    "benchmark_names", "get_benchmark", "load_config", "run_program", "run_programs",
]

"""The real-model benchmarks by name: the one list of them (`get_benchmark("gsm8k")`)."""

from __future__ import annotations

from typing import Any

from lookum_jax.benchmarks.base import Benchmark
from lookum_jax.benchmarks.coding import MBPP, HumanEval
from lookum_jax.benchmarks.mathematics import GSM8K, MATH500
from lookum_jax.benchmarks.puzzles import CountdownBenchmark, SudokuBenchmark
from lookum_jax.problems import Registry

BENCHMARKS: Registry[Benchmark] = Registry(
    "benchmark", (GSM8K, MATH500, HumanEval, MBPP, CountdownBenchmark, SudokuBenchmark))


def benchmark_names() -> list[str]:
  return BENCHMARKS.names()


def get_benchmark(name: str, **options: Any) -> Benchmark:
  """The benchmark called `name` with `options` (its dataclass fields); see `Registry.get`
  for the errors it raises."""
  return BENCHMARKS.get(name, options)

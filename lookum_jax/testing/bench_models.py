"""Model shapes with random weights for the speed and memory benchmarks in `experiments/`
(several scripts share them, so they import them through the package)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.model.config import ModelConfig, llada_8b, tiny
from lookum_jax.model.llada import LLaDA
from lookum_jax.testing.models import random_model

# Forward, cache and memory benchmarks (`bench_forward.py`, `bench_cache.py`, `bench_memory.py`).
BENCH_CONFIGS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    # LLaDA's shape scaled down; vocab 32768 so the head does not dominate the small ones.
    "small": lambda: ModelConfig(vocab_size=32768, d_model=512, n_layers=8, n_heads=8,
                                 n_kv_heads=8, mlp_hidden_size=1536, mask_token_id=32767,
                                 eos_token_id=32766, eot_token_id=32765, pad_token_id=32766),
    "medium": lambda: ModelConfig(vocab_size=32768, d_model=1024, n_layers=16, n_heads=16,
                                  n_kv_heads=16, mlp_hidden_size=3072, mask_token_id=32767,
                                  eos_token_id=32766, eot_token_id=32765, pad_token_id=32766),
    "llada-8b": llada_8b,
}

# End-to-end decoding benchmarks (`bench_decode.py`, `bench_lookum_overhead.py`).
DECODE_MODELS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    "small": lambda: ModelConfig(vocab_size=1000, d_model=256, n_layers=4, n_heads=4,
                                 n_kv_heads=4, mlp_hidden_size=768, max_sequence_length=1024,
                                 mask_token_id=999, eos_token_id=998, eot_token_id=997,
                                 pad_token_id=998),
    "llada-8b": llada_8b,
}
MAX_CPU_PARAMS = 1e9


def build_model(name: str, dtype: jnp.dtype) -> LLaDA:
  """Random weights: sharpened numpy ones for small models, on-device init for large ones."""
  config = DECODE_MODELS[name]()
  if config.num_params() <= MAX_CPU_PARAMS:
    return random_model(config, dtype=dtype, param_dtype=dtype)
  if jax.default_backend() == "cpu":
    raise SystemExit(f"refusing to allocate {config.num_params() / 1e9:.1f}B params on CPU; "
                     "run --model llada-8b on a GPU.")

  def create() -> LLaDA:
    return LLaDA(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=dtype)

  graphdef, _ = nnx.split(nnx.eval_shape(create))
  state = jax.jit(lambda: nnx.split(create())[1])()  # initialised on the device only
  return nnx.merge(graphdef, state)


def prompt_vocab(config: ModelConfig) -> int:
  """Random prompt tokens are drawn below this: under every special id (LLaDA's mask id
  126336 lies inside its vocabulary, and a prompt may not hold it)."""
  special = [config.mask_token_id, config.eos_token_id, config.eot_token_id]
  return min(i for i in special if i is not None)


def random_prompts(config: ModelConfig, batch: int, length: int, seed: int) -> np.ndarray:
  """`[batch, length]` int32 ordinary token ids, below every special id (padding included)."""
  high = min(i for i in (prompt_vocab(config), config.pad_token_id) if i is not None)
  return np.random.default_rng(seed).integers(0, high, (batch, length)).astype(np.int32)


def time_call(fn: Callable[[], jax.Array], runs: int, warmup: int) -> float:
  """Median wall time (s) of `fn()` after `warmup` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak_tflops(dtype: jnp.dtype, size: int, runs: int = 10) -> float:
  """Achieved TFLOP/s of a `size`^3 matmul in `dtype`: the practical peak to compare with."""
  a = jax.random.normal(jax.random.key(1), (size, size), dtype)
  b = jax.random.normal(jax.random.key(2), (size, size), dtype)
  matmul = jax.jit(jnp.matmul)
  seconds = time_call(lambda: matmul(a, b), runs, warmup=2)
  return 2.0 * size ** 3 / seconds / 1e12


def median_seconds(fn: Callable[[], object], runs: int, sync: Callable[[], None]) -> float:
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - start)
  return statistics.median(times)

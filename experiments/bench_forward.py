"""Forward-pass throughput of the LLaDA model (one NFE = one full forward over the sequence).

    python experiments/bench_forward.py --config small --batch 1 4 --seq-len 128 256
    python experiments/bench_forward.py --config llada-8b --batch 8 --seq-len 512  # on a GPU
    python experiments/bench_forward.py --checkpoint DIR --batch 4 --seq-len 256

Random weights (or a local checkpoint), jit-compiled; compile time is reported apart, then
warm-up calls, then the median of --runs timed calls. Reports tokens/s and achieved TFLOP/s
(2 x matmul params x tokens + attention), and on accelerators the fraction of a measured
peak: the time of a large matmul in the compute dtype.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.model.config import ModelConfig
from lookum_jax.model.llada import LLaDA
from lookum_jax.testing.bench_models import BENCH_CONFIGS, matmul_peak_tflops, time_call


def matmul_params(config: ModelConfig) -> int:
  """Parameters used in matmuls per token (all but the embedding table and the norms)."""
  d, kv = config.d_model, config.n_kv_heads * config.head_dim
  per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.mlp_hidden_size
  return config.n_layers * per_layer + d * config.vocab_size


def forward_flops(config: ModelConfig, batch: int, seq_len: int) -> float:
  """FLOPs of one forward: 2 per matmul param per token, plus QK^T and PV (4 L^2 d per layer)."""
  tokens = batch * seq_len
  attention = config.n_layers * 4 * batch * seq_len * seq_len * config.d_model
  return 2.0 * matmul_params(config) * tokens + attention


def build_model(args: argparse.Namespace, dtype: jnp.dtype) -> tuple[ModelConfig, nnx.GraphDef,
                                                                        nnx.State]:
  """Graph and params: random ones initialised on device, or a local checkpoint."""
  if args.checkpoint:
    from lookum_jax.loading import load_model

    model = load_model(args.checkpoint, dtype=dtype)
    graphdef, state = nnx.split(model)
    return model.config, graphdef, state
  config = BENCH_CONFIGS[args.config]()
  param_dtype = jnp.dtype(args.param_dtype or dtype)

  def create() -> LLaDA:
    return LLaDA(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype)

  graphdef, _ = nnx.split(nnx.eval_shape(create))
  state = jax.jit(lambda: nnx.split(create())[1])()  # never materialised on the host
  return config, graphdef, state


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", choices=sorted(BENCH_CONFIGS), default="small",
                      help="model size with random weights (default: small)")
  parser.add_argument("--checkpoint", default=None,
                      help="benchmark a local checkpoint directory instead of --config")
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes")
  parser.add_argument("--seq-len", type=int, nargs="+", default=[128, 256],
                      help="sequence lengths (prompt + generation)")
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                      help="compute dtype (default: bfloat16 on GPU/TPU, float32 on CPU)")
  parser.add_argument("--param-dtype", choices=("bfloat16", "float32"), default=None,
                      help="param dtype for random weights (default: the compute dtype)")
  parser.add_argument("--runs", type=int, default=10, help="timed calls per shape (median)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
  parser.add_argument("--peak-size", type=int, default=None,
                      help="matmul size for the peak measurement (default: 8192 on GPU/TPU, "
                           "2048 on CPU; 0 skips it)")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  backend = jax.default_backend()
  on_cpu = backend == "cpu"
  dtype = jnp.dtype(args.dtype or ("float32" if on_cpu else "bfloat16"))
  config, graphdef, state = build_model(args, dtype)

  @jax.jit
  def forward(state: nnx.State, tokens: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state)(tokens)

  peak_size = args.peak_size if args.peak_size is not None else (2048 if on_cpu else 8192)
  peak = matmul_peak_tflops(dtype, peak_size) if peak_size else None
  device = jax.devices()[0]
  print(f"device: {device.device_kind} ({backend}, {jax.device_count()} device(s)); "
        f"model: {args.checkpoint or args.config}, {config.num_params() / 1e6:.1f}M params, "
        f"compute {dtype.name}")
  if peak:
    print(f"measured {dtype.name} matmul peak ({peak_size}^3): {peak:.2f} TFLOP/s")
  header = (f"{'batch':>5} {'seq':>5} {'compile s':>9} {'median ms':>10} {'tokens/s':>10} "
            f"{'TFLOP/s':>8} {'% peak':>7}")
  print(header + "\n" + "-" * len(header))
  rng = np.random.default_rng(0)
  for batch in args.batch:
    for seq_len in args.seq_len:
      if seq_len > config.max_sequence_length:
        print(f"{batch:>5} {seq_len:>5}  skipped: longer than the model context")
        continue
      tokens = jax.device_put(rng.integers(0, config.vocab_size, (batch, seq_len),
                                           dtype=np.int32))
      start = time.perf_counter()
      compiled = forward.lower(state, tokens).compile()
      compile_s = time.perf_counter() - start
      seconds = time_call(lambda: compiled(state, tokens), args.runs, args.warmup)  # noqa: B023
      tflops = forward_flops(config, batch, seq_len) / seconds / 1e12
      share = f"{100 * tflops / peak:6.1f}%" if peak else "    n/a"
      print(f"{batch:>5} {seq_len:>5} {compile_s:>9.2f} {1e3 * seconds:>10.2f} "
            f"{batch * seq_len / seconds:>10.0f} {tflops:>8.3f} {share:>7}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

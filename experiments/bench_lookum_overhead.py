"""LookUM's wall-clock overhead against its FLOP overhead, per decoding step.

    python experiments/bench_lookum_overhead.py                    # CPU: the small model
    python experiments/bench_lookum_overhead.py --model llada-8b   # GPU: LLaDA-8B shape, bf16

Every forward pass of a generation costs the same FLOPs, so LookUM's FLOP overhead over its
base strategy is the ratio of their NFE. Its wall-clock overhead can be lower: the K
look-ahead canvases of a step go through the model as one batch of B * K rows, which a device
that is not saturated by B rows runs in less than K times the time. This prints both ratios
for K = 2, 3 (and more with --paths) on random weights, with the same steps as the base
(low_confidence), and the device's peak memory where JAX reports it (GPU/TPU). JAX's peak is a
high-water mark since the process started: a row shows the largest footprint of it and the
rows before it, so run one sampler per process (`--paths`, `--batch`) for its own peak.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lookum_jax.sampling import LookUM, SamplerConfig, generate
from lookum_jax.testing.bench_models import (
    DECODE_MODELS,
    build_model,
    median_seconds,
    prompt_vocab,
)


def peak_memory_gib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2**30


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=sorted(DECODE_MODELS), default=None,
                      help="random-weight shape (default: small on CPU, llada-8b on GPU)")
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--paths", type=int, nargs="+", default=[2, 3])
  parser.add_argument("--prompt-length", type=int, default=32)
  parser.add_argument("--gen-length", type=int, default=256)
  parser.add_argument("--block-length", type=int, default=32)
  parser.add_argument("--steps", type=int, default=128,
                      help="denoising steps for the base and for LookUM (default: 2 per step)")
  parser.add_argument("--runs", type=int, default=1, help="timed generations (median)")
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None)
  args = parser.parse_args(argv)

  backend = jax.default_backend()
  name = args.model or ("small" if backend == "cpu" else "llada-8b")
  dtype = jnp.dtype(args.dtype or ("float32" if backend == "cpu" else "bfloat16"))
  model = build_model(name, dtype)
  base = SamplerConfig(gen_length=args.gen_length, block_length=args.block_length,
                       steps=args.steps)
  print(f"device: {jax.devices()[0].device_kind} ({backend}); model: {name} "
        f"({model.config.num_params() / 1e6:.1f}M params, {dtype.name}); prompt "
        f"{args.prompt_length}, gen {args.gen_length}, block {args.block_length}, steps "
        f"{args.steps}; median of {args.runs} run(s)")
  print("| batch | sampler | NFE | gen s | ms / step | FLOP overhead | wall overhead "
        "| peak GiB so far |")
  print("|" + "---|" * 8, flush=True)
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  for batch in args.batch:
    prompt = rng.integers(0, prompt_vocab(model.config), (batch, args.prompt_length),
                          dtype=np.int32)
    samplers = [("low_confidence", base)] + [
        (f"lookum K={k}", base.replace(strategy=LookUM(paths=k)))
        for k in args.paths]
    reference = None
    for label, config in samplers:
      result = generate(model, prompt, config, key)  # compiles
      nfe = float(np.mean(np.asarray(result.nfe)))
      seconds = median_seconds(
          lambda c=config, p=prompt: generate(model, p, c, key).tokens.block_until_ready(),
          args.runs, lambda: None)
      if reference is None:
        reference = (nfe, seconds)
      peak = peak_memory_gib()
      print(f"| {batch} | {label} | {nfe:.0f} | {seconds:.2f} | "
            f"{1e3 * seconds / args.steps:.1f} | {nfe / reference[0]:.2f}x | "
            f"{seconds / reference[1]:.2f}x | {'-' if peak is None else f'{peak:.1f}'} |",
            flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Memory and compile time of the real generate program, AOT-compiled from abstract weights.

    python experiments/bench_memory.py --config llada-8b --batch 8 --prompt 512 --gen 256
    python experiments/bench_memory.py --config llada-8b --strategy lookum --paths 3 --cache dual

Nothing is allocated: the model is built with `nnx.eval_shape` (bf16 `ShapeDtypeStruct`
weights), the prompt and keys are `ShapeDtypeStruct`s, and the whole generation (every block
and step, as `lookum_jax.generate` runs it) is lowered and compiled for this machine's backend
(CPU here: XLA:CPU's buffer assignment, an estimate of an accelerator's). The table gives the
compile time and `compiled.memory_analysis()`: argument bytes (the weights and inputs), output
bytes and temp bytes (everything the program allocates besides its arguments: the KV cache,
activations, logits). With no flags it runs low_confidence, threshold and LookUM K=3, each
without and with the dual and prefix caches.

XLA:CPU has no bf16 matmul: it converts bf16 weights to float32 and hoists the converted
copies out of the loop, so the bf16 program's temp bytes on CPU include a float32 copy of the
weights that an accelerator does not make. The table therefore also compiles the float32
program (`temp f32`): every activation, cache and logit in float32, an upper bound on the bf16
program's non-weight memory on an accelerator.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from lookum_jax.model.llada import abstract_model
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.testing.bench_models import BENCH_CONFIGS

GIB = 1024 ** 3


def sampler(strategy: str, paths: int, gen: int, block: int, cache: str) -> SamplerConfig:
  params = {"paths": paths} if strategy == "lookum" else None
  return SamplerConfig(gen_length=gen, block_length=block, steps=gen,
                       strategy=parse_strategy(strategy, params, what="--strategy"), cache=cache)


def measure(model_config, config: SamplerConfig, batch: int, prompt: int, scan: bool,
            dtype) -> dict:
  """Lowers and compiles one generate program; returns its sizes (bytes) and compile time."""
  model = abstract_model(model_config, dtype=dtype, param_dtype=dtype, scan_layers=scan)
  graphdef, weights = nnx.split(model)
  prompt_ids = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
  prompt_mask = jax.ShapeDtypeStruct((batch, prompt), jnp.bool_)
  keys = jax.ShapeDtypeStruct((batch,), jax.random.key(0).dtype)
  ids = (model_config.mask_token_id, model_config.eos_token_id,
         tuple(model_config.stop_token_ids))
  start = time.perf_counter()
  lowered = _generate_jit.lower(graphdef, weights, prompt_ids, prompt_mask, keys, None,
                                config=config, ids=ids)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  return dict(compile_s=seconds, argument=memory.argument_size_in_bytes,
              output=memory.output_size_in_bytes, temp=memory.temp_size_in_bytes,
              alias=memory.alias_size_in_bytes)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="llada-8b", choices=sorted(BENCH_CONFIGS))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--gen", type=int, default=256)
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--strategy", nargs="+", default=["low_confidence", "threshold", "lookum"])
  parser.add_argument("--paths", type=int, default=3, help="LookUM K")
  parser.add_argument("--cache", nargs="+", default=["none", "dual", "prefix"])
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  parser.add_argument("--no-scan", action="store_true", help="unrolled layers (slower compile)")
  args = parser.parse_args(argv)
  model_config = BENCH_CONFIGS[args.config]()
  dtype = jnp.dtype(args.dtype)
  print(f"{args.config} {args.dtype}, batch {args.batch}, prompt {args.prompt}, gen {args.gen}, "
        f"block {args.block}, {'unrolled' if args.no_scan else 'scanned'} layers, backend "
        f"{jax.default_backend()}, jax {jax.__version__}")
  print("| strategy | cache | compile s | weights+inputs GiB | temp GiB (bf16 on CPU) | "
        "temp GiB (f32 program) |")
  print("|---|---|---|---|---|---|")
  for strategy in args.strategy:
    for cache in args.cache:
      config = sampler(strategy, args.paths, args.gen, args.block, cache)
      row = measure(model_config, config, args.batch, args.prompt, not args.no_scan, dtype)
      f32 = (measure(model_config, config, args.batch, args.prompt, not args.no_scan,
                     jnp.dtype(jnp.float32)) if dtype != jnp.float32 else row)
      label = f"lookum K={args.paths}" if strategy == "lookum" else strategy
      print(f"| {label} | {cache} | {row['compile_s']:.1f} | {row['argument'] / GIB:.2f} | "
            f"{row['temp'] / GIB:.2f} | {f32['temp'] / GIB:.2f} |", flush=True)


if __name__ == "__main__":
  main()

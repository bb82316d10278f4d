"""Decode time with and without XLA:CPU's YNN fusions (`BATCH_INVARIANT_COMPILER_OPTIONS`).

    PYTHONPATH=. python experiments/batch_invariance_speed.py

Jits the function behind `generate`'s program twice, with plain `jax.jit` (YNNPACK on, the
program before the change) and with the decode options, and reports the median of `--runs`
timed calls after a compiling call, for each cache mode and batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
from flax import nnx

from lookum_jax.sampling import SamplerConfig, loop
from lookum_jax.testing import random_model
from lookum_jax.testing.bench_models import BENCH_CONFIGS, random_prompts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
  parser.add_argument("--prompt", type=int, default=256)
  parser.add_argument("--gen", type=int, default=64)
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--runs", type=int, default=3)
  args = parser.parse_args()
  config = BENCH_CONFIGS[args.config]()
  graphdef, weights = nnx.split(random_model(config))
  ids = (config.mask_token_id, config.eos_token_id, tuple(config.stop_token_ids))
  static = ("graphdef", "ids")
  programs = {
      "ynn (before)": jax.jit(loop._generate_jit.__wrapped__, static_argnames=static),
      "no ynn (after)": jax.jit(loop._generate_jit.__wrapped__, static_argnames=static,
                                compiler_options=loop.BATCH_INVARIANT_COMPILER_OPTIONS)}
  for cache in ("dual", "prefix"):
    sampler = SamplerConfig(gen_length=args.gen, block_length=args.block, steps=args.gen,
                            cache=cache)
    for batch in args.batch:
      prompt = random_prompts(config, batch, args.prompt, seed=batch)
      for name, program in programs.items():
        def run(program=program):
          program(graphdef, weights, prompt, None, jax.random.key(0), None, config=sampler,  # noqa: B023
                  ids=ids).tokens.block_until_ready()
        run()
        times = []
        for _ in range(args.runs):
          start = time.perf_counter()
          run()
          times.append(time.perf_counter() - start)
        print(f"{cache} B={batch} P={args.prompt} G={args.gen} {name}: "
              f"median {statistics.median(times):.3f} s", flush=True)


if __name__ == "__main__":
  main()

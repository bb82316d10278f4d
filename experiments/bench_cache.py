"""Cached decoding speed: cache none / prefix / dual x low_confidence, threshold, LookUM K=2.

    python experiments/bench_cache.py                       # small random model, CPU shapes
    python experiments/bench_cache.py --prompt 64 512 --gen 256 512 --batch 1 8
    python experiments/bench_cache.py --model toy-chain     # a shipped (or local) model
    python experiments/bench_cache.py --prompt 512 --gen 256 --strategy low_confidence \
        --cache none dual --refresh never adaptive:0.5 vicinity+adaptive:0.5

Every row decodes the same prompts with one sampler and reports generated tokens per second
of decode wall time (compile excluded: the first call compiles, then the median of `--runs`
timed calls), the speed-up over the reference setting at the same shape (no cache,
low_confidence, one token per step: LLaDA's `generate`), NFE and forward tokens (query
positions the forwards processed: a FLOP proxy) per sequence. All rows of a table come from
one run, so their ratios share the machine's state.

The random model's predictions are not a trained model's: threshold decoding's parallelism
(how many positions clear tau) and LookUM's branching depend on the model, so those rows'
step counts are only meaningful on a trained model (`--model`).

`--refresh` runs each cached row under each cache refresh schedule: `never` (block starts
only, Fast-dLLM), `N` (every N steps), `adaptive:T` (drift threshold T), and any of them
prefixed `vicinity+` (the vicinity block start; `vicinity` alone: with no other refresh).
On the random model the drift, and so how often the adaptive refresh fires, is not a trained
model's: read those rows' speed against their NFE and forward tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, Threshold, generate
from lookum_jax.testing import random_model
from lookum_jax.testing.bench_models import BENCH_CONFIGS

STRATEGIES = {
    "low_confidence": lambda gen, block: SamplerConfig(gen_length=gen, block_length=block,
                                                       steps=gen),
    "threshold 0.9": lambda gen, block: SamplerConfig(gen_length=gen, block_length=block,
                                                      strategy=Threshold(tau=0.9)),
    "lookum K=2": lambda gen, block: SamplerConfig(
        gen_length=gen, block_length=block, steps=gen,
        strategy=parse_strategy("lookum", {"paths": 2, "verifier_scope": "block"})),
}


def load(args):
  """(model, prompt sampler) for `--model` or a random `--config` model."""
  if args.model:
    import lookum_jax as lj

    model = lj.load_model(args.model)
  else:
    model = random_model(BENCH_CONFIGS[args.config](), dtype=jnp.dtype(args.dtype),
                         param_dtype=jnp.dtype(args.dtype))
  if args.scan:
    from lookum_jax.model.llada import scan_model

    model = scan_model(model)
  return model


def prompts(model, batch: int, length: int, seed: int) -> np.ndarray:
  """Ordinary token ids (below the special ids at the top of the vocabulary)."""
  config = model.config
  special = {config.mask_token_id, config.eos_token_id, config.eot_token_id,
             config.pad_token_id}
  high = min(special) if min(special) > 16 else config.vocab_size
  return np.random.default_rng(seed).integers(0, high, (batch, length)).astype(np.int32)


def time_generation(model, ids, config, runs: int) -> tuple[float, float, dict]:
  """(compile+first call s, median decode s, per-sequence counts)."""
  keys = jax.random.split(jax.random.key(0), ids.shape[0])
  start = time.perf_counter()
  result = generate(model, ids, config, keys)
  jax.block_until_ready(result.tokens)
  first = time.perf_counter() - start
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    result = generate(model, ids, config, keys)
    jax.block_until_ready(result.tokens)
    times.append(time.perf_counter() - start)
  counts = {"nfe": float(np.mean(result.nfe)), "steps": float(np.mean(result.num_steps)),
            "forward_tokens": float(np.mean(result.forward_tokens))}
  return first, statistics.median(times), counts


def refresh_fields(schedule: str) -> dict:
  """`SamplerConfig` fields of a `--refresh` schedule (`never`, `N`, `adaptive:T`, each
  optionally prefixed `vicinity+`)."""
  fields = {}
  if schedule == "vicinity" or schedule.startswith("vicinity+"):
    fields["block_start"] = "vicinity"
    schedule = schedule[len("vicinity+"):] or "never"
  if schedule.startswith("adaptive:"):
    fields.update(cache_refresh="adaptive", refresh_threshold=float(schedule.split(":")[1]))
  elif schedule != "never":
    if not schedule.isdigit():
      raise ValueError(f"--refresh {schedule!r}: use never, N, adaptive:T, or vicinity+ any.")
    fields["cache_refresh"] = int(schedule)
  return fields


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
  parser.add_argument("--model", help="a model directory or shipped name (default: random)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--prompt", type=int, nargs="+", default=[64, 512])
  parser.add_argument("--gen", type=int, nargs="+", default=[256])
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--batch", type=int, nargs="+", default=[1])
  parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
  parser.add_argument("--cache", nargs="+", default=["none", "prefix", "dual"])
  parser.add_argument("--only", nargs="+", metavar="STRATEGY/CACHE",
                      help="run only these rows, e.g. 'low_confidence/none' 'lookum K=2/dual' "
                      "(the reference row low_confidence/none is always run)")
  parser.add_argument("--refresh", nargs="+", default=["never"], metavar="SCHEDULE",
                      help="cache refresh schedules for the cached rows: never, N, adaptive:T, "
                      "each optionally prefixed vicinity+ (module docstring)")
  parser.add_argument("--runs", type=int, default=1)
  parser.add_argument("--scan", action="store_true", help="stacked layers under lax.scan")
  args = parser.parse_args(argv)
  model = load(args)
  name = args.model or f"random {args.config}"
  print(f"{name} ({args.dtype}), block {args.block}, backend {jax.default_backend()}, "
        f"{jax.device_count()} device(s), jax {jax.__version__}; median of {args.runs} run(s)")
  print("| prompt | gen | batch | strategy | cache | tokens/s | speed-up | NFE | "
        "forward tokens | compile+first s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for prompt_length in args.prompt:
    for gen in args.gen:
      for batch in args.batch:
        ids = prompts(model, batch, prompt_length, seed=prompt_length + gen + batch)
        reference = None
        for strategy in args.strategy:
          for cache in args.cache:
            wanted = args.only is None or f"{strategy}/{cache}" in args.only
            if not wanted and (strategy, cache) != ("low_confidence", "none"):
              continue
            for schedule in ["never"] if cache == "none" else args.refresh:
              config = STRATEGIES[strategy](gen, args.block).replace(
                  cache=cache, **refresh_fields(schedule))
              first, seconds, counts = time_generation(model, ids, config, args.runs)
              tokens_per_s = batch * gen / seconds
              if strategy == "low_confidence" and cache == "none":
                reference = tokens_per_s
              ratio = f"{tokens_per_s / reference:.1f}x" if reference else "-"
              label = cache if schedule == "never" else f"{cache}, {schedule}"
              print(f"| {prompt_length} | {gen} | {batch} | {strategy} | {label} | "
                    f"{tokens_per_s:.1f} | {ratio} | {counts['nfe']:.0f} | "
                    f"{counts['forward_tokens']:.0f} | {first:.1f} |", flush=True)


if __name__ == "__main__":
  main()

"""End-to-end decoding speed: our jit-compiled loop vs an eager PyTorch per-step loop.

    python experiments/bench_decode.py                      # CPU: the small model
    python experiments/bench_decode.py --model llada-8b     # GPU: LLaDA-8B shape, bf16
    python experiments/bench_decode.py --batch 1 --gen-length 64 --steps 64 --runs 3

Both sides run the same algorithm (LLaDA's sampler: semi-AR blocks, one forward per step,
top-k by confidence) on the same random weights: `lookum_jax.generate` (one XLA program,
`lax.while_loop`) and `torch_reference_generate` (an eager port of LLaDA's public
`generate()` on a plain-torch forward). Generation time is the median of `--runs` timed
calls: for JAX after the first call, which compiles (compile time is reported apart);
for torch after a warm-up forward. tokens/s counts generated tokens (batch x gen_length).
`same` is the fraction of response tokens both produce (temperature 0; float rounding can
flip near-ties).
The 8B shape is refused on CPU: it would need 32 GB in float32 and hours per run.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lookum_jax.model.llada import LLaDA
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.timing import compile_timer
from lookum_jax.testing.bench_models import (
    DECODE_MODELS,
    build_model,
    median_seconds,
    prompt_vocab,
)


def bench_jax(model: LLaDA, prompt: np.ndarray, config: SamplerConfig, runs: int
              ) -> tuple[np.ndarray, float, float, int]:
  """(tokens, compile seconds, median generation seconds, NFE per sequence)."""
  key = jax.random.key(0)
  with compile_timer() as compile_seconds:
    result = generate(model, prompt, config, key)
    tokens = np.asarray(result.tokens)
  seconds = median_seconds(lambda: generate(model, prompt, config, key).tokens.block_until_ready(),
                           runs, lambda: None)
  return tokens, compile_seconds[0], seconds, int(result.nfe[0])


def bench_torch(model: LLaDA, prompt: np.ndarray, config: SamplerConfig, runs: int,
                threads: int | None) -> tuple[np.ndarray, float] | str:
  """(tokens, median generation seconds), or why it was skipped."""
  import torch

  from lookum_jax.testing.torch_llada import TorchLLaDA, torch_reference_generate

  on_gpu = jax.default_backend() == "gpu"
  if on_gpu and not torch.cuda.is_available():
    return "skipped: this torch has no CUDA"
  if threads:
    torch.set_num_threads(threads)
  device = "cuda" if on_gpu else "cpu"
  dtype = {jnp.dtype("bfloat16"): torch.bfloat16, jnp.dtype("float32"): torch.float32}[
      jnp.dtype(model.dtype)]
  torch_model = TorchLLaDA.from_jax(model, dtype, device)
  c = model.config
  sync = torch.cuda.synchronize if on_gpu else (lambda: None)

  def run():
    return torch_reference_generate(
        torch_model, prompt, steps=config.steps, gen_length=config.gen_length,
        block_length=config.block_length, temperature=config.temperature,
        cfg_scale=config.cfg_scale, remasking=config.strategy.name, mask_id=c.mask_token_id,
        eos_id=c.eos_token_id, eot_id=c.eot_token_id)

  torch_model(torch.as_tensor(prompt[:, :8]))  # warm-up: allocator, kernels
  sync()
  outputs = []
  seconds = median_seconds(lambda: outputs.append(run()), runs, sync)
  return outputs[0].cpu().numpy(), seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n".join(__doc__.split("\n")[1:]))
  parser.add_argument("--model", choices=sorted(DECODE_MODELS), default=None,
                      help="model shape with random weights (default: small on CPU, "
                           "llada-8b on GPU)")
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes")
  parser.add_argument("--prompt-length", type=int, default=32)
  parser.add_argument("--gen-length", type=int, default=256)
  parser.add_argument("--block-length", type=int, default=32)
  parser.add_argument("--steps", type=int, default=256)
  parser.add_argument("--strategy", choices=("low_confidence", "random"),
                      default="low_confidence", help="a strategy the torch reference has")
  parser.add_argument("--temperature", type=float, default=0.0)
  parser.add_argument("--cfg-scale", type=float, default=0.0)
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                      help="weights and compute (default: float32 on CPU, bfloat16 on GPU)")
  parser.add_argument("--runs", type=int, default=1,
                      help="timed generations per side after the first (median)")
  parser.add_argument("--torch-threads", type=int, default=None,
                      help="torch intra-op threads (default: torch's own choice)")
  parser.add_argument("--no-torch", action="store_true", help="time the JAX loop only")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  backend = jax.default_backend()
  name = args.model or ("small" if backend == "cpu" else "llada-8b")
  dtype = jnp.dtype(args.dtype or ("float32" if backend == "cpu" else "bfloat16"))
  model = build_model(name, dtype)
  config = SamplerConfig(gen_length=args.gen_length, block_length=args.block_length,
                         steps=args.steps, temperature=args.temperature,
                         cfg_scale=args.cfg_scale, strategy=args.strategy)
  print(f"device: {jax.devices()[0].device_kind} ({backend}); model: {name} "
        f"({model.config.num_params() / 1e6:.1f}M params, {dtype.name}); prompt "
        f"{args.prompt_length}, gen {config.gen_length}, block {config.block_length}, steps "
        f"{config.steps}, {config.strategy.name}, temperature {config.temperature}; median of "
        f"{args.runs} run(s)")
  header = ("| batch | NFE | JAX compile s | JAX gen s | JAX tok/s | torch gen s | torch tok/s "
            "| JAX speed-up | same |")
  print(header + "\n|" + "---|" * 9, flush=True)
  rng = np.random.default_rng(0)
  for batch in args.batch:
    prompt = rng.integers(0, prompt_vocab(model.config), (batch, args.prompt_length),
                          dtype=np.int32)
    tokens, compile_s, jax_s, nfe = bench_jax(model, prompt, config, args.runs)
    generated = batch * config.gen_length
    row = (f"| {batch} | {nfe} | {compile_s:.2f} | {jax_s:.2f} | {generated / jax_s:.0f} ")
    torch_out = "skipped: --no-torch" if args.no_torch else bench_torch(
        model, prompt, config, args.runs, args.torch_threads)
    if isinstance(torch_out, str):
      row += f"| {torch_out} | | | |"
    else:
      torch_tokens, torch_s = torch_out
      same = np.mean(torch_tokens[:, args.prompt_length:] == tokens[:, args.prompt_length:])
      row += (f"| {torch_s:.2f} | {generated / torch_s:.0f} | {torch_s / jax_s:.2f}x "
              f"| {same:.0%} |")
    print(row, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

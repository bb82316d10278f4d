"""Single-matmul speed of XLA against torch at the decode benchmark's shapes.

    python experiments/bench_matmul.py [--threads 2]

`bench_decode.py` finds the jit loop slower than an eager torch loop at batch 1 on CPU while
its per-step loop overhead is below one forward pass. This isolates the cause: the same
float32 matmuls (the small model's projections, LM head and attention scores at 288
positions), jitted JAX against torch, median of `--repeats` calls each. On GPU the two
libraries reach the same vendor kernels; on CPU they do not. The 1x1x1 row is each side's
fixed cost per call (JAX: dispatch of a jitted function), which the others include.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# (label, batch dims, m, k, n): the "small" model of bench_decode at 32 + 256 positions.
SHAPES = (
    ("call overhead (1x1x1)", (), 1, 1, 1),
    ("q/k/v/out projection", (), 288, 256, 256),
    ("MLP up / gate", (), 288, 256, 768),
    ("MLP down", (), 288, 768, 256),
    ("LM head", (), 288, 256, 1000),
    ("attention scores (4 heads)", (4,), 288, 64, 288),
    ("batch 8: MLP up / gate", (8,), 288, 256, 768),
)


def median_us(fn: Callable[[], object], repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e6)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--threads", type=int, default=None,
                      help="torch intra-op threads (default: torch's own choice)")
  parser.add_argument("--repeats", type=int, default=200)
  args = parser.parse_args(argv)
  import torch

  if args.threads:
    torch.set_num_threads(args.threads)
  rng = np.random.default_rng(0)
  cpu = jax.devices("cpu")[0]  # both sides on the CPU, also on a machine with a GPU
  matmul = jax.jit(jnp.matmul)  # runs where its inputs are
  print(f"device: cpu ({os.cpu_count()} cores; XLA uses all of them); torch threads "
        f"{torch.get_num_threads()}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; median of {args.repeats} calls")
  print("| matmul | shape | JAX us | torch us | JAX / torch time |")
  print("|---|---|---|---|---|")
  for label, batch, m, k, n in SHAPES:
    a = rng.standard_normal(batch + (m, k)).astype(np.float32)
    b = rng.standard_normal(batch + (k, n)).astype(np.float32)
    ja, jb = jax.device_put(a, cpu), jax.device_put(b, cpu)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    jax_us = median_us(lambda ja=ja, jb=jb: matmul(ja, jb).block_until_ready(), args.repeats)
    with torch.inference_mode():
      torch_us = median_us(lambda ta=ta, tb=tb: torch.matmul(ta, tb), args.repeats)
    shape = "x".join(map(str, batch + (m, k, n)))
    print(f"| {label} | {shape} | {jax_us:.0f} | {torch_us:.0f} | {jax_us / torch_us:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Where a row's forward starts to depend on its batch: op-by-op, batched (B) vs alone (1).

    PYTHONPATH=. python experiments/batch_invariance_probe.py --config small --row 6

Builds the bench model and `random_prompts` (as `peer_mismatch.py`), and compares row
`--row` of the batched forward with the row forwarded alone, bitwise, op by op through the
first layers, eagerly and compiled, for the block-start forward, a dual-cache window step and
a prefix-cache step.

Compiled runs use the decode program's `BATCH_INVARIANT_COMPILER_OPTIONS` (`--ynn`: plain
`jax.jit`, XLA:CPU's YNNPACK fusions on). Eager runs compile op by op with the process's
flags: `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` turns YNNPACK off for them.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.model.llada import apply_rope, rope_angles
from lookum_jax.sampling.loop import BATCH_INVARIANT_COMPILER_OPTIONS
from lookum_jax.sampling.prefix_window import prefix_windows
from lookum_jax.testing import random_model
from lookum_jax.testing.bench_models import BENCH_CONFIGS, random_prompts


def block_ops(block, x, cos, sin):
  """The intermediates of `Block.__call__` (no mask), in order."""
  b, t, _ = x.shape
  out = {"attn_norm": block.attn_norm(x)}
  out["q_proj"] = block.q_proj(out["attn_norm"])
  out["k_proj"] = block.k_proj(out["attn_norm"])
  out["v_proj"] = block.v_proj(out["attn_norm"])
  out["rope_q"] = apply_rope(out["q_proj"].reshape(b, t, block.n_heads, block.head_dim), cos, sin)
  out["rope_k"] = apply_rope(out["k_proj"].reshape(b, t, block.n_kv_heads, block.head_dim),
                             cos, sin)
  values = out["v_proj"].reshape(b, t, block.n_kv_heads, block.head_dim)
  out["attention"] = jax.nn.dot_product_attention(out["rope_q"], out["rope_k"], values)
  out["attn_out"] = block.attn_out(out["attention"].reshape(b, t, -1))
  out["resid1"] = x + out["attn_out"]
  out["ff_norm"] = block.ff_norm(out["resid1"])
  out["ff_proj"] = block.ff_proj(out["ff_norm"])
  out["up_proj"] = block.up_proj(out["ff_norm"])
  out["swiglu"] = jax.nn.silu(out["ff_proj"]) * out["up_proj"]
  out["ff_out"] = block.ff_out(out["swiglu"])
  out["block_out"] = out["resid1"] + out["ff_out"]
  return out


def compare(name, batched, alone, row):
  a, b = np.asarray(batched)[row], np.asarray(alone)[0]
  diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
  print(f"  {name:12s} {'equal' if np.array_equal(a, b) else f'DIFF max {diff:.3e}'}",
        flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="small")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--row", type=int, default=6)
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--gen", type=int, default=256)
  parser.add_argument("--layers", type=int, default=1)
  parser.add_argument("--jit", action="store_true", help="compile the op-by-op comparison")
  parser.add_argument("--ops", action="store_true", help="also compare op by op")
  parser.add_argument("--ynn", action="store_true",
                      help="compile with plain jax.jit (YNNPACK on), not the decode options")
  args = parser.parse_args()
  jit = functools.partial(jax.jit, compiler_options=None if args.ynn
                          else BATCH_INVARIANT_COMPILER_OPTIONS)
  config = BENCH_CONFIGS[args.config]()
  model = random_model(config)
  ids = random_prompts(config, args.batch, args.prompt, seed=args.batch)
  canvas = np.concatenate([ids, np.full((args.batch, args.gen), config.mask_token_id,
                                        np.int32)], axis=1)

  def run(tokens):
    b, t = tokens.shape
    cos, sin = rope_angles(model.positions(None, b, t), config.head_dim, config.rope_theta)
    x = jnp.take(model.wte[...], tokens, axis=0)
    outs = [{"embed": x, "cos": cos}]
    for block in list(model.blocks)[:args.layers]:
      o = block_ops(block, x, cos, sin)
      outs.append(o)
      x = o["block_out"]
    head = {"ln_f": model.ln_f(x)}
    head["logits_window"] = model._logits(x[:, args.prompt:args.prompt + 32])
    head["logits_all"] = model._logits(x)
    logits, cache = model.prefill(tokens, logits_window=(args.prompt, 32))
    head["prefill_logits"] = logits
    head["prefill_k"] = jnp.moveaxis(cache.k, 1, 0)
    head["prefill_v"] = jnp.moveaxis(cache.v, 1, 0)
    outs.append(head)
    return outs

  if args.ops:
    fn = jit(run) if args.jit else run
    batched = fn(jnp.asarray(canvas))
    alone = fn(jnp.asarray(canvas[args.row:args.row + 1]))
    for layer, (ob, oa) in enumerate(zip(batched, alone, strict=True)):
      print(f"layer {layer - 1}:")
      for name in ob:
        compare(name, ob[name], oa[name], args.row)

  # The three forwards the cached decoder runs: block start, dual step, prefix step.
  p, width = args.prompt, 32
  start = p + 3 * width  # block 3: a step with a cache from a later canvas
  rng = np.random.default_rng(1)
  now = canvas.copy()
  filled = rng.random(now.shape) < 0.5
  filled[:, start + width:] = False
  now[:, p:] = np.where(filled[:, p:], rng.integers(0, 1000, now[:, p:].shape), now[:, p:])
  windows = prefix_windows(args.gen, width)
  shape = windows.shape_of[3]
  first = now.shape[1] - windows.lengths[shape]

  def forwards(model, tokens_start, tokens_now):
    logits, cache = model.prefill(tokens_start, logits_window=(start, width))
    dual = model.extend(tokens_now[:, None, start:start + width], start, cache,
                        logits_window=(0, width))
    prefix = model.extend(tokens_now[:, None, first:], first, cache,
                          logits_window=(start - first, width), fresh_from=start,
                          cache_keys=p + windows.cached_response[shape])
    return {"a_prefill_logits": logits, "a_prefill_k": jnp.moveaxis(cache.k, 1, 0),
            "a_prefill_v": jnp.moveaxis(cache.v, 1, 0), "b_dual_logits": dual[:, 0],
            "c_prefix_logits": prefix[:, 0]}

  graphdef, state = nnx.split(model)
  for mode in ("eager", "jit"):
    if mode == "jit":
      fn = jit(lambda state, a, b: forwards(nnx.merge(graphdef, state), a, b))
    else:
      fn = lambda state, a, b: forwards(model, a, b)  # noqa: E731
    rows = slice(args.row, args.row + 1)
    batched = fn(state, jnp.asarray(canvas), jnp.asarray(now))
    alone = fn(state, jnp.asarray(canvas[rows]), jnp.asarray(now[rows]))
    print(f"{mode}:")
    for name in batched:
      compare(name, batched[name], alone[name], args.row)


if __name__ == "__main__":
  main()

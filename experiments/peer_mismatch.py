"""Why a row of our decode differs from the Fast-dLLM port: a float32 near-tie, or batch dependence.

    PYTHONPATH=. python experiments/peer_mismatch.py --config small --batch 8 --rows 3
    PYTHONPATH=.:/work/peer/pydeps python experiments/peer_mismatch.py --config small \
        --batch 1 --rows 0 --cache prefix --fastdllm-dir /work/peer/Fast-dLLM

Decodes `bench_peer.py`'s prompts (same seed, same random model) with our jit decoder as a
batch, then for each `--rows` row:

1. decodes the row alone with our decoder and with the port (float32): does our row depend on
   the batch, and does the row alone still differ from the port?
2. replays our batched trajectory step by step (its canvas rebuilt from `unmask_order`) and
   asks the port, in float32 and in float64, which position and token it would commit at
   each step; the first step where the port's choice differs from ours is "the first
   differing step";
3. at that step prints each implementation's log-confidence of our choice and of the port's
   choice (log-odds = their difference; positive: our choice wins), and the largest logit
   difference between our batched and alone forwards, and between ours and the float64 port.
   Ours is recomputed eagerly (op by op) and compiled ("ours jit"): two float32 roundings of
   the same math, neither the decode program's own, which fuses the loop around them.

Our model computes in float32 only (RMSNorm, RoPE, softmax and logits are float32 by
design), so float64 exists only on the port's side: it says which choice exact arithmetic
makes.

With `--fastdllm-dir` (a checkout of NVlabs/Fast-dLLM, as `bench_peer.py` takes it) the
referee whose first differing choice is sought is Fast-dLLM's own `LLaDAModelLM` in float32,
called as its `generate_with_prefix_cache` / `generate_with_dual_cache` call it (block start:
the whole canvas, its cache cut at the block start in prefix mode; step: `x[block_start:]`
against that prefix, or the block against the whole cache in dual mode), and its own rule
picks: argmax over the whole vocabulary (the mask token included, unlike ours), confidence
from a float64 softmax. Its float64 copy (same code, `.double()`; its RoPE table stays
float32) and both ports are replayed beside it. Step 1 then decodes the row with
Fast-dLLM's own generate function instead of the port.
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.prefix_window import prefix_windows
from lookum_jax.sampling.strategies import LowConfidence, Threshold
from lookum_jax.testing import random_model
from lookum_jax.testing.bench_models import BENCH_CONFIGS, random_prompts
from lookum_jax.testing.torch_fastdllm import (
  forward_with_kv,
  partial_forward,
  torch_fastdllm_generate,
)
from lookum_jax.testing.torch_llada import TorchLLaDA


def canvas_at(tokens: np.ndarray, order: np.ndarray, step: int, mask_id: int) -> np.ndarray:
  """Our canvas before global step `step`: positions committed at a later step are masked."""
  canvas = tokens.copy()
  canvas[order >= step] = mask_id
  return canvas


def choice(logits: np.ndarray, masked: np.ndarray, mask_id: int, mask_candidate: bool = False
           ) -> tuple[int, int, np.ndarray]:
  """(position, token, log-confidence per position) of one low_confidence step over a block's
  logits `[w, V]` (float64 softmax; the mask token never a candidate, as ours, unless
  `mask_candidate`, as Fast-dLLM's plain argmax)."""
  logits = logits.astype(np.float64)
  candidates = logits.copy()
  if not mask_candidate:
    candidates[:, mask_id] = -np.inf
  tokens = candidates.argmax(-1)
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  log_conf = logits[np.arange(len(tokens)), tokens] - log_z
  log_conf = np.where(masked, log_conf, -np.inf)
  position = int(np.argmax(log_conf))
  return position, int(tokens[position]), log_conf


def port_block_start(torch_model, canvas: np.ndarray, start: int, end: int, cache: str):
  """The port's block-start forward for one row: (block logits `[w, V]`, the block's cache)."""
  logits, kv = forward_with_kv(torch_model, torch.from_numpy(canvas[None].astype(np.int64)))
  if cache == "prefix":
    kv = [(k[:, :, :start], v[:, :, :start]) for k, v in kv]
  return logits[0, start:end].double().numpy(), kv


def port_step(torch_model, canvas: np.ndarray, kv, start: int, end: int, cache: str
              ) -> np.ndarray:
  """The port's cached-step logits `[w, V]` of the block, for one row."""
  now = torch.from_numpy(canvas[None].astype(np.int64))
  window = now[:, start:] if cache == "prefix" else now[:, start:end]
  return partial_forward(torch_model, window, start, kv)[0, :end - start].double().numpy()


def fastdllm_block_start(peer, canvas: np.ndarray, start: int, end: int, cache: str):
  """Fast-dLLM's block-start forward for one row, as its generate functions run it: (block
  logits `[w, V]`, the cache it keeps: cut at the block start in prefix mode)."""
  with torch.no_grad():
    output = peer(torch.from_numpy(canvas[None].astype(np.int64)), use_cache=True)
  past = output.past_key_values
  if cache == "prefix":
    past = [tuple(t[:, :, :start] for t in layer) for layer in past]
  return output.logits[0, start:end].double().numpy(), past


def fastdllm_step(peer, canvas: np.ndarray, past, start: int, end: int, cache: str
                  ) -> np.ndarray:
  """Fast-dLLM's cached-step logits `[w, V]` of the block for one row (its dual mode writes
  the block's fresh keys into the cache in place, as its generate function lets it)."""
  x = torch.from_numpy(canvas[None].astype(np.int64))
  with torch.no_grad():
    if cache == "prefix":
      logits = peer(x[:, start:], past_key_values=past, use_cache=True).logits
    else:
      replace = torch.zeros_like(x, dtype=torch.bool)
      replace[:, start:end] = True
      logits = peer(x[:, start:end], past_key_values=past, use_cache=True,
                    replace_position=replace).logits
  return logits[0, :end - start].double().numpy()


def our_logits(model, canvas_start: np.ndarray, canvas_now: np.ndarray, start: int, end: int,
               prompt: int, cache: str, first: bool, jit: bool = False) -> np.ndarray:
  """Our block logits `[B, w, V]` at one step for the given rows, from `prefill`/`extend`
  (eagerly, op by op, or compiled with `jax.jit` as the decoder's program is)."""
  args = (canvas_start, canvas_now, start, end, prompt, cache, first)
  if not jit:
    return np.asarray(_our_logits(model, *args), np.float64)
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda state: _our_logits(nnx.merge(graphdef, state), *args))
  return np.asarray(run(state), np.float64)


def _our_logits(model, canvas_start, canvas_now, start, end, prompt, cache, first):
  width = end - start
  if first:
    logits, _ = model.prefill(jnp.asarray(canvas_now), logits_window=(start, width))
    return logits
  _, kv = model.prefill(jnp.asarray(canvas_start))
  if cache == "prefix":  # ours: the canvas tail from the block's window, fresh from its start
    total = canvas_now.shape[1]
    windows = prefix_windows(total - prompt, width)
    shape = windows.shape_of[(start - prompt) // width]
    first_pos = total - windows.lengths[shape]
    logits = model.extend(jnp.asarray(canvas_now[:, None, first_pos:]), first_pos, kv,
                          logits_window=(start - first_pos, width), fresh_from=start,
                          cache_keys=prompt + windows.cached_response[shape])
  else:
    logits = model.extend(jnp.asarray(canvas_now[:, None, start:end]), start, kv,
                          logits_window=(0, width))
  return logits[:, 0]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rows", type=int, nargs="+", required=True,
                      help="the rows bench_peer.py reported as differing")
  parser.add_argument("--cache", default="dual", choices=["dual", "prefix"])
  parser.add_argument("--strategy", default="low_confidence",
                      choices=["low_confidence", "threshold"],
                      help="threshold: valid while it commits one token per step (the replay "
                      "checks that no second position clears tau)")
  parser.add_argument("--from-block", type=int, default=None,
                      help="replay from this block and skip the port's own (slow) decode of the "
                      "row (default: decode it, replay from the first differing token's block)")
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--gen", type=int, default=256)
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--batch-check-only", action="store_true",
                      help="only compare each row's batched tokens with the row decoded alone")
  parser.add_argument("--fastdllm-dir", type=Path, default=None,
                      help="a checkout of NVlabs/Fast-dLLM: referee with its own model and code")
  args = parser.parse_args(argv)
  torch.set_num_threads(args.threads)
  config = BENCH_CONFIGS[args.config]()
  mask_id = config.mask_token_id
  model = random_model(config)
  ids = random_prompts(config, args.batch, args.prompt, seed=args.batch)
  strategy = Threshold(tau=0.9) if args.strategy == "threshold" else LowConfidence()
  sampler = SamplerConfig(gen_length=args.gen, block_length=args.block, steps=args.gen,
                          strategy=strategy, cache=args.cache)
  batched = generate(model, ids, sampler, jax.random.key(0))
  tokens, order = np.asarray(batched.tokens), np.asarray(batched.unmask_order)
  ports = {name: TorchLLaDA.from_jax(model, dtype)
           for name, dtype in (("port f32", torch.float32), ("port f64", torch.float64))}
  # name -> (block-start forward, step forward, whether the mask token is a candidate)
  referees = {name: (functools.partial(port_block_start, port),
                     functools.partial(port_step, port), False)
              for name, port in ports.items()}
  referee, peer_generate = "port f32", None
  if args.fastdllm_dir is not None:
    from bench_peer import build_fastdllm_model, fastdllm_commit, import_fastdllm
    peer_generate, model_class, config_class = import_fastdllm(args.fastdllm_dir)
    print(f"Fast-dLLM: NVlabs/Fast-dLLM @ {fastdllm_commit(args.fastdllm_dir)}")
    peer = build_fastdllm_model(model, model_class, config_class)
    peers = {"Fast-dLLM f32": peer, "Fast-dLLM f64": copy.deepcopy(peer).double()}
    referees = {**{name: (functools.partial(fastdllm_block_start, m),
                          functools.partial(fastdllm_step, m), True)
                   for name, m in peers.items()}, **referees}
    referee = "Fast-dLLM f32"
  p = args.prompt
  for row in args.rows:
    print(f"== row {row} of {args.batch} ({args.config}, {args.cache}, {args.strategy}) ==")
    alone = generate(model, ids[row:row + 1], sampler, jax.random.key(0))
    alone_tokens = np.asarray(alone.tokens)[0]
    if args.from_block is None and not args.batch_check_only and peer_generate is not None:
      function = (peer_generate.generate_with_prefix_cache if args.cache == "prefix"
                  else peer_generate.generate_with_dual_cache)
      x, _ = function(peers["Fast-dLLM f32"], torch.from_numpy(ids[row:row + 1].astype(np.int64)),
                      steps=args.gen, gen_length=args.gen, block_length=args.block,
                      temperature=0.0, remasking="low_confidence", mask_id=mask_id,
                      threshold=0.9 if args.strategy == "threshold" else None)
      port_alone = x.numpy()
    elif args.from_block is None and not args.batch_check_only:
      port_alone, _ = torch_fastdllm_generate(
          ports["port f32"], ids[row:row + 1].astype(np.int64), steps=args.gen,
          gen_length=args.gen, block_length=args.block, mask_id=mask_id, cache=args.cache,
          threshold=0.9 if args.strategy == "threshold" else None, mask_is_candidate=False)
    else:
      port_alone = None

    def first_diff(a, b):
      diff = np.flatnonzero(a[p:] != b[p:])
      return "equal" if diff.size == 0 else f"differ from response position {diff[0]}"

    print(f"ours batched vs ours alone: {first_diff(tokens[row], alone_tokens)}", flush=True)
    if args.batch_check_only:
      continue
    if port_alone is not None:
      print(f"ours alone vs {referee} alone: {first_diff(alone_tokens, port_alone[0])}")
      print(f"ours batched vs {referee} alone: {first_diff(tokens[row], port_alone[0])}")
    # Replay our batched trajectory and find the first step the port would decide otherwise
    # (from the block of the first differing token on: earlier blocks committed the same).
    if port_alone is None:
      from_block = args.from_block
    else:
      diff = np.flatnonzero(tokens[row, p:] != port_alone[0, p:])
      from_block = int(diff[0]) // args.block if diff.size else args.gen // args.block
    found, kv, step_logits = {}, {}, {}
    for step in range(from_block * args.block, args.gen):
      block = step // args.block
      start = p + block * args.block
      end = start + args.block
      now = canvas_at(tokens, order, step, mask_id)
      ours_pos = int(np.flatnonzero(order[row] == step)[0]) - start
      ours_tok = int(tokens[row, start + ours_pos])
      masked = now[row, start:end] == mask_id
      # every referee every step: their caches stay current
      for name, (block_start, step_forward, mask_candidate) in referees.items():
        if step % args.block == 0:
          logits, kv[name] = block_start(now[row], start, end, args.cache)
        else:
          logits = step_forward(now[row], kv[name], start, end, args.cache)
        step_logits[name] = logits
        pos, tok, log_conf = choice(logits, masked, mask_id, mask_candidate)
        if args.strategy == "threshold" and np.sum(log_conf >= np.log(0.9)) > 1:
          print(f"  step {step}: {name} has two positions above tau: the replay's one-token "
                "rule does not hold here")
        if (pos, tok) != (ours_pos, ours_tok) and name not in found:
          found[name] = (step, pos, tok)
      if referee in found:
        break
    if referee not in found:
      print(f"{referee}, replaying our batched trajectory, makes every choice ours made")
      continue
    step, port_pos, port_tok = found[referee]
    base = step // args.block * args.block
    print(f"first differing step: {step} (block {step // args.block}, step "
          f"{step % args.block} in it); ours commits response position "
          f"{order[row, p:].tolist().index(step)}, {referee} would commit "
          f"{base + port_pos} (token {port_tok}"
          + (", the mask token" if port_tok == mask_id else "") + ")")
    for name in referees:
      if name != referee:
        other = found.get(name)
        print(f"  {name}: " + ("agrees with ours there" if other is None or other[0] != step
                               else f"would commit {base + other[1]} (token {other[2]})")
              + (f" (first differs from ours at step {other[0]})"
                 if other is not None and other[0] < step else ""))
    block = step // args.block
    start = p + block * args.block
    end = start + args.block
    first = step % args.block == 0
    now = canvas_at(tokens, order, step, mask_id)
    begin = canvas_at(tokens, order, block * args.block, mask_id)
    ours_pos = int(np.flatnonzero(order[row] == step)[0]) - start
    masked = now[row, start:end] == mask_id
    logits = {
        "ours batched": our_logits(model, begin, now, start, end, p, args.cache, first)[row],
        "ours alone": our_logits(model, begin[row:row + 1], now[row:row + 1], start, end, p,
                                 args.cache, first)[0],
        "ours jit": our_logits(model, begin, now, start, end, p, args.cache, first,
                               jit=True)[row]}
    logits.update(step_logits)  # both ports' logits at this step
    print(f"log-confidence at that step: position {block * args.block + ours_pos} (ours) vs "
          f"{block * args.block + port_pos} ({referee}'s); log-odds > 0: ours' choice wins")
    for name, value in logits.items():
      pos, tok, log_conf = choice(value, masked, mask_id,
                                  name in referees and referees[name][2])
      top2 = np.sort(value[pos])[-2:]
      print(f"  {name:>12}: {log_conf[ours_pos]:+.9f} vs {log_conf[port_pos]:+.9f}, log-odds "
            f"{log_conf[ours_pos] - log_conf[port_pos]:+.3e}; picks position "
            f"{block * args.block + pos}, token {tok} (top-2 logit gap there "
            f"{top2[1] - top2[0]:.3e})")
    pairs = (("ours batched", "ours alone"), ("ours batched", "ours jit"),
             ("ours batched", "port f64"),
             ("ours alone", "port f64"), ("port f32", "port f64"))
    if referee != "port f32":
      pairs += ((referee, "port f64"), (referee, "ours batched"),
                ("Fast-dLLM f64", "port f64"))
    print("  max |logit difference|: " + ", ".join(
        f"{a} vs {b} {np.max(np.abs(logits[a] - logits[b])):.3e}" for a, b in pairs))
  return 0


if __name__ == "__main__":
  sys.exit(main())

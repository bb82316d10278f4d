"""Side by side with the peer: our jit decoder against Fast-dLLM's algorithm, on the same weights.

    PYTHONPATH=.:/work/peer/pydeps python experiments/bench_peer.py \\
        --fastdllm-dir /work/peer/Fast-dLLM            # the full grid (see --help for subsets)
    python experiments/bench_peer.py --configs small --batch 1 --cache dual  # ours + port only

One random LLaDA (`bench_forward.BENCH_CONFIGS`: `small` is 60.8M parameters, `medium` 285M)
decodes the same prompts three ways, back to back in every row:

- ours: `lookum_jax.sampling.generate`, one compiled program (the first call compiles; its
  extra time over the timed call is reported as compile time, apart from tokens/s);
- port: the project's eager PyTorch port of Fast-dLLM (`lookum_jax.testing.torch_fastdllm`,
  the parity reference), float32, batched as Fast-dLLM's loop implies;
- Fast-dLLM: NVlabs/Fast-dLLM's own `llada/generate.py` (`generate_with_dual_cache`,
  `generate_with_prefix_cache`) on its own `LLaDAModelLM` (`llada/model/modeling_llada.py`),
  built from our config's `config.json` dict and loaded with our weights through the
  Hugging Face name table of `lookum_jax.convert.hf` (what `from_pretrained` would read
  from an exported checkpoint). Only with `--fastdllm-dir` (a checkout of that repository,
  never part of this one; its `modeling_llada.py` imports `einops`, which must be
  importable). Its functions build a batch-1 canvas (`torch.full((1, ...))`), so a batch of
  B prompts is B calls, one per prompt, as a user of that code runs them.

Decoding: P=512 prompt tokens, G=256, block 32, temperature 0; `low_confidence` is the fixed
schedule (steps = G: one token per step), `threshold` is Fast-dLLM's confidence threshold 0.9.
The random model's confidences are not a trained model's, so threshold NFE here says nothing
about a real model's parallelism. Tokens are compared per row (ours against each peer); a
row that differs is reported with its first differing response position. Our decoder never
commits the mask token (the project's documented deviation, `mask_is_candidate=False` in
the port); Fast-dLLM's plain argmax may.

"% peak" is the FLOP rate of our decode (projections, LM head over the block, attention
against all keys; from the forward-token count our decoder reports) over a jitted float32
2048^3 matmul measured in the same run (as `bench_forward.py` measures its peak).
torch runs on `--threads` threads; XLA uses every core of the machine.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.sampling import SamplerConfig, generate, prefix_window
from lookum_jax.sampling.prefix_window import prefix_windows
from lookum_jax.sampling.strategies import LowConfidence, Threshold
from lookum_jax.testing import random_model
from lookum_jax.testing.bench_models import BENCH_CONFIGS, matmul_peak_tflops, random_prompts

STRATEGIES = ("threshold", "low_confidence")
CACHES = ("dual", "prefix")
TAU = 0.9
RESULTS = Path(__file__).resolve().parent / "results" / "engine"


def strategy_value(name: str):
  return Threshold(tau=TAU) if name == "threshold" else LowConfidence()


def decode_flops(config, gen_length: int, block: int, nfe: float, forward_tokens: float,
                 total_length: int) -> float:
  """FLOPs of one sequence's decode as our cached decoder runs it: every processed query
  position goes through the layers and attends over all `total_length` keys; the LM head
  runs over the block's positions only (one block per forward)."""
  d, kv, f = config.d_model, config.n_kv_heads * config.head_dim, config.mlp_hidden_size
  layer_params = config.n_layers * (2 * d * d + 2 * d * kv + 3 * d * f)
  attention = 4.0 * config.n_layers * d * total_length
  head = 2.0 * d * config.vocab_size * block
  return (2.0 * layer_params + attention) * forward_tokens + head * nfe


# --- ours ------------------------------------------------------------------------------------

def run_ours(model, ids: np.ndarray, sampler: SamplerConfig) -> dict:
  key = jax.random.key(0)
  start = time.perf_counter()
  jax.block_until_ready(generate(model, ids, sampler, key).tokens)
  first = time.perf_counter() - start
  start = time.perf_counter()
  result = generate(model, ids, sampler, key)
  tokens = np.asarray(jax.block_until_ready(result.tokens))
  seconds = time.perf_counter() - start
  return dict(tokens=tokens, seconds=seconds, compile_s=max(first - seconds, 0.0),
              nfe=float(np.mean(result.nfe)),
              forward_tokens=float(np.mean(result.forward_tokens)))


# --- the project's port -----------------------------------------------------------------------

def run_port(torch_model, ids: np.ndarray, *, gen: int, block: int, cache: str,
             strategy: str) -> dict:
  from lookum_jax.testing.torch_fastdllm import torch_fastdllm_generate

  start = time.perf_counter()
  tokens, nfe = torch_fastdllm_generate(
      torch_model, ids.astype(np.int64), steps=gen, gen_length=gen, block_length=block,
      mask_id=torch_model.config.mask_token_id, cache=cache,
      threshold=TAU if strategy == "threshold" else None, mask_is_candidate=False)
  return dict(tokens=tokens, seconds=time.perf_counter() - start, nfe=float(nfe))


# --- Fast-dLLM's own code ----------------------------------------------------------------------

def fastdllm_commit(directory: Path) -> str:
  try:
    return subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git checkout)"


def import_fastdllm(directory: Path):
  """Fast-dLLM's `llada/generate.py` module and `LLaDAModelLM`/`LLaDAConfig` classes."""
  llada = directory / "llada"
  needed = (llada / "generate.py", llada / "model" / "modeling_llada.py")
  if not all(path.is_file() for path in needed):
    raise SystemExit(f"--fastdllm-dir {directory} has no llada/generate.py and llada/model/"
                     "modeling_llada.py; pass a checkout of github.com/NVlabs/Fast-dLLM.")
  sys.path.insert(0, str(llada))  # its generate.py imports `model.modeling_llada`
  try:
    peer_generate = importlib.import_module("generate")
    modeling = importlib.import_module("model.modeling_llada")
    configuration = importlib.import_module("model.configuration_llada")
  except ModuleNotFoundError as e:
    raise SystemExit(f"importing Fast-dLLM failed ({e}); its modeling code needs einops: put a "
                     "directory holding it on PYTHONPATH (e.g. pip install --target DIR einops)."
                     ) from e
  if not str(Path(peer_generate.__file__).resolve()).startswith(str(llada.resolve())):
    raise SystemExit(f"`import generate` found {peer_generate.__file__}, not Fast-dLLM's.")
  return peer_generate, modeling.LLaDAModelLM, configuration.LLaDAConfig


def hf_state_dict(model) -> dict:
  """Our weights under the Hugging Face LLaDA names, in PyTorch layout (float32)."""
  import torch

  from lookum_jax.convert.hf import TRANSPOSE, param_mappings

  params = {tuple(path): variable.get_value()
            for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  state = {}
  for mapping in param_mappings(model.config):
    array = np.asarray(params[mapping.path], np.float32)
    if mapping.transform == TRANSPOSE:
      array = array.T
    state[mapping.hf_name] = torch.from_numpy(np.array(array))  # a writable copy
  return state


def build_fastdllm_model(model, model_class, config_class):
  import torch

  peer_config = config_class(**model.config.to_hf_config())
  peer = model_class(peer_config, init_params=False).to(torch.float32).eval()
  missing, unexpected = peer.load_state_dict(hf_state_dict(model), strict=False)
  if missing or unexpected:
    raise SystemExit(f"Fast-dLLM's LLaDAModelLM does not match our checkpoint names: missing "
                     f"{missing}, unexpected {unexpected}.")
  return peer


def run_fastdllm(peer_generate, peer_model, ids: np.ndarray, *, gen: int, block: int,
                 cache: str, strategy: str) -> dict:
  import torch

  function = (peer_generate.generate_with_dual_cache if cache == "dual"
              else peer_generate.generate_with_prefix_cache)
  rows, nfes = [], []
  start = time.perf_counter()
  for row in ids:  # its canvas is batch-1: one call per prompt
    x, nfe = function(peer_model, torch.from_numpy(row[None].astype(np.int64)), steps=gen,
                      gen_length=gen, block_length=block, temperature=0.0,
                      remasking="low_confidence", mask_id=peer_model.config.mask_token_id,
                      threshold=TAU if strategy == "threshold" else None)
    rows.append(x.numpy()[0])
    nfes.append(nfe)
  seconds = time.perf_counter() - start
  return dict(tokens=np.stack(rows), seconds=seconds, nfe=float(np.mean(nfes)))


# --- one step, profiled ------------------------------------------------------------------------

def median_time(fn, runs: int) -> float:
  fn()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def profile_step(model, peer, ids: np.ndarray, *, block: int, cache: str, runs: int) -> dict:
  """Seconds of one block-start forward and one cached step's forward, ours (each jitted
  alone, with XLA's cost analysis) and Fast-dLLM's model (its own cached forward), on the
  canvas of the second block's start."""
  import torch

  batch, prompt = ids.shape
  total = prompt + 8 * block
  mask_id = model.config.mask_token_id
  canvas = np.full((batch, total), mask_id, np.int32)
  canvas[:, :prompt] = ids
  canvas[:, prompt:prompt + block] = ids[:, :block]  # a committed first block
  start, end = prompt + block, prompt + 2 * block
  graphdef, state = nnx.split(model)

  def full(state, tokens):
    return nnx.merge(graphdef, state).prefill(tokens, logits_window=(start, block))

  def window(state, tokens, kv):
    m = nnx.merge(graphdef, state)
    if cache == "prefix":  # as our loop runs it in block 1: the canvas tail from its window
      windows = prefix_windows(total - prompt, block)
      shape = windows.shape_of[1]
      first = total - windows.lengths[shape]
      return m.extend(tokens[:, None, first:], first, kv, logits_window=(start - first, block),
                      fresh_from=start, cache_keys=prompt + windows.cached_response[shape])
    return m.extend(tokens[:, None, start:end], start, kv, logits_window=(0, block))

  tokens = jnp.asarray(canvas)
  full_c = jax.jit(full).lower(state, tokens).compile()
  _, kv = full_c(state, tokens)
  window_c = jax.jit(window).lower(state, tokens, kv).compile()
  out = {}
  for name, compiled, call in (
      ("ours full", full_c, lambda: jax.block_until_ready(full_c(state, tokens))),
      ("ours step", window_c, lambda: jax.block_until_ready(window_c(state, tokens, kv)))):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    out[name] = dict(seconds=median_time(call, runs), gflop=cost.get("flops", 0.0) / 1e9,
                     gbytes=cost.get("bytes accessed", 0.0) / 1e9)
  if peer is not None:
    x = torch.from_numpy(canvas.astype(np.int64))
    with torch.no_grad():
      past = peer(x, use_cache=True).past_key_values
      if cache == "prefix":
        prefix = [tuple(t[:, :, :start] for t in layer) for layer in past]
        step = lambda: peer(x[:, start:], past_key_values=prefix, use_cache=True)  # noqa: E731
      else:
        replace = torch.zeros_like(x, dtype=torch.bool)
        replace[:, start:end] = True
        step = lambda: peer(x[:, start:end], past_key_values=past, use_cache=True,  # noqa: E731
                            replace_position=replace)
      if batch == 1:  # its dual cache indexes replace_position of row 0 only: batch 1
        out["Fast-dLLM full"] = dict(seconds=median_time(lambda: peer(x, use_cache=True), runs))
        out["Fast-dLLM step"] = dict(seconds=median_time(step, runs))
  return out


# --- the table ---------------------------------------------------------------------------------

def compare(ours: np.ndarray, theirs: np.ndarray, prompt_length: int) -> str:
  """'yes', or 'no: rows r@pos,...' with each differing row's first differing response position."""
  ours, theirs = ours[:, prompt_length:], theirs[:, prompt_length:]
  bad = [f"{r}@{int(np.argmax(ours[r] != theirs[r]))}"
         for r in range(ours.shape[0]) if np.any(ours[r] != theirs[r])]
  return "yes" if not bad else f"no: {len(bad)}/{ours.shape[0]} rows ({', '.join(bad)})"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--configs", nargs="+", default=["small", "medium"],
                      choices=sorted(BENCH_CONFIGS))
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--cache", nargs="+", default=list(CACHES), choices=CACHES)
  parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--gen", type=int, default=256)
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
  parser.add_argument("--fastdllm-dir", type=Path, default=None,
                      help="a checkout of github.com/NVlabs/Fast-dLLM (default: not run)")
  parser.add_argument("--no-port", action="store_true", help="skip the project's eager port")
  parser.add_argument("--peak-size", type=int, default=2048,
                      help="matmul size of the measured peak (0 skips it)")
  parser.add_argument("--name", default="bench_peer",
                      help="result file stem under experiments/results/engine/")
  parser.add_argument("--no-save", action="store_true")
  parser.add_argument("--profile-step", action="store_true",
                      help="instead of decoding: time one block-start and one cached forward "
                      "of ours (with XLA's FLOP and byte counts) and of Fast-dLLM's model")
  parser.add_argument("--runs", type=int, default=5, help="timed calls per --profile-step forward")
  parser.add_argument("--prefix-shapes", type=int, default=None,
                      help="static window lengths of our prefix cache's steps (default "
                      f"{prefix_window.MAX_PREFIX_SHAPES}: one per block up to that many)")
  args = parser.parse_args(argv)
  if args.prefix_shapes is not None:
    prefix_window.MAX_PREFIX_SHAPES = args.prefix_shapes  # before any program is compiled
  import torch

  from lookum_jax.testing.torch_llada import TorchLLaDA

  torch.set_num_threads(args.threads)
  peer = None
  commit = None
  if args.fastdllm_dir is not None:
    peer_generate, model_class, config_class = import_fastdllm(args.fastdllm_dir)
    commit = fastdllm_commit(args.fastdllm_dir)
  peak = matmul_peak_tflops(jnp.float32, args.peak_size) if args.peak_size else None
  load = os.getloadavg()
  print(f"backend {jax.default_backend()} ({os.cpu_count()} cores), jax {jax.__version__}, "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads; float32; "
        f"P={args.prompt} G={args.gen} block {args.block}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  if peak:
    print(f"measured float32 matmul ({args.peak_size}^3, jit): {peak * 1e3:.1f} GFLOP/s")
  print("Fast-dLLM: " + (f"NVlabs/Fast-dLLM @ {commit} (its own generate.py and LLaDAModelLM, "
                         "one call per prompt)" if commit else
                         "not run (no --fastdllm-dir): ours and the port only"))
  if "prefix" in args.cache:
    windows = prefix_windows(args.gen, args.block)
    print(f"our prefix steps: window lengths {list(windows.length_of)} per block "
          f"({len(windows.lengths)} static shapes; Fast-dLLM forwards "
          f"{[args.gen - b * args.block for b in range(args.gen // args.block)]})")
  columns = ["config", "params_M", "batch", "strategy", "cache", "ours_tok_s", "port_tok_s",
             "fastdllm_tok_s", "ours_vs_port", "ours_vs_fastdllm", "ours_nfe", "port_nfe",
             "fastdllm_nfe", "equal_port", "equal_fastdllm", "ours_compile_s", "ours_gflop_s",
             "pct_peak", "load_1min"]
  print("| " + " | ".join(columns) + " |")
  print("|" + "---|" * len(columns))
  rows = []
  for config_name in args.configs:
    config = BENCH_CONFIGS[config_name]()
    model = random_model(config)
    torch_model = None if args.no_port else TorchLLaDA.from_jax(model, torch.float32)
    if args.fastdllm_dir is not None:
      peer = build_fastdllm_model(model, model_class, config_class)
    if args.profile_step:
      for batch in args.batch:
        for cache in args.cache:
          ids = random_prompts(config, batch, args.prompt, seed=batch)
          for name, value in profile_step(model, peer, ids, block=args.block, cache=cache,
                                          runs=args.runs).items():
            extra = (f", XLA cost analysis {value['gflop']:.2f} GFLOP, {value['gbytes']:.2f} GB "
                     f"accessed ({value['gflop'] / value['seconds']:.1f} GFLOP/s)"
                     if "gflop" in value else "")
            print(f"{config_name} batch {batch} {cache}: {name} forward "
                  f"{1e3 * value['seconds']:.1f} ms{extra}", flush=True)
      continue
    for batch in args.batch:
      ids = random_prompts(config, batch, args.prompt, seed=batch)
      for strategy in args.strategy:
        for cache in args.cache:
          sampler = SamplerConfig(gen_length=args.gen, block_length=args.block, steps=args.gen,
                                  strategy=strategy_value(strategy), cache=cache)
          ours = run_ours(model, ids, sampler)
          row = dict(config=config_name, params_M=round(config.num_params() / 1e6, 1),
                     batch=batch, strategy=strategy, cache=cache,
                     ours_tok_s=batch * args.gen / ours["seconds"], ours_nfe=ours["nfe"],
                     ours_compile_s=ours["compile_s"])
          flops = decode_flops(config, args.gen, args.block, ours["nfe"],
                               ours["forward_tokens"], args.prompt + args.gen)
          row["ours_gflop_s"] = batch * flops / ours["seconds"] / 1e9
          row["pct_peak"] = 100 * row["ours_gflop_s"] / (peak * 1e3) if peak else None
          kwargs = dict(gen=args.gen, block=args.block, cache=cache, strategy=strategy)
          for label, enabled, run in (
              ("port", torch_model is not None,
               lambda: run_port(torch_model, ids, **kwargs)),  # noqa: B023
              ("fastdllm", peer is not None,
               lambda: run_fastdllm(peer_generate, peer, ids, **kwargs))):  # noqa: B023
            if not enabled:
              row.update({f"{label}_tok_s": None, f"ours_vs_{label}": None,
                          f"{label}_nfe": None, f"equal_{label}": "-"})
              continue
            theirs = run()
            row[f"{label}_tok_s"] = batch * args.gen / theirs["seconds"]
            row[f"ours_vs_{label}"] = row["ours_tok_s"] / row[f"{label}_tok_s"]
            row[f"{label}_nfe"] = theirs["nfe"]
            row[f"equal_{label}"] = compare(ours["tokens"], theirs["tokens"], args.prompt)
          row["load_1min"] = os.getloadavg()[0]
          rows.append(row)
          print("| " + " | ".join(_cell(row[c]) for c in columns) + " |", flush=True)
          if not args.no_save:  # after every row: a run cut short keeps what it measured
            save(args, argv, rows, columns, commit, peak, torch.__version__)
  load = os.getloadavg()
  print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  return 0


def save(args, argv, rows: list[dict], columns: list[str], commit, peak, torch_version) -> None:
  RESULTS.mkdir(parents=True, exist_ok=True)
  meta = dict(command=" ".join(["experiments/bench_peer.py"] + (argv or sys.argv[1:])),
              fastdllm_commit=commit, threads=args.threads, prompt=args.prompt, gen=args.gen,
              block=args.block, matmul_gflop_s=peak * 1e3 if peak else None,
              jax=jax.__version__, torch=torch_version, cores=os.cpu_count())
  (RESULTS / f"{args.name}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
  with open(RESULTS / f"{args.name}.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def _cell(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.2f}"
  return str(value)


if __name__ == "__main__":
  sys.exit(main())

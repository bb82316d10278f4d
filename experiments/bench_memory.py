"""Per-device memory and compile time of the real decode programs (and one GRPO step) on the
model `load_model` builds, AOT-compiled from abstract weights on an emulated device mesh.

    python experiments/bench_memory.py                       # the full grid (slow: ~100 compiles)
    python experiments/bench_memory.py --batch 32 --strategy lookum --cache dual --devices 1
    python experiments/bench_memory.py --grpo-only
    python experiments/bench_memory.py --grpo-only --update-only --update-chunk 0 2048 1024 512

Nothing is allocated. The model is `abstract_model(llada_8b(), scan_layers=
DEFAULT_SCAN_LAYERS)` in bf16, the layout and sharding `load_model(path, mesh=...)` gives
(`--no-scan` for the unrolled layout); its `ShapeDtypeStruct` weights carry the shardings of
`param_shardings`, the prompts and keys are split over `data`. Every generate program (every
block and step, as `lookum_jax.generate` runs it) is lowered and compiled for this machine's
backend with 8 emulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`,
set here before jax starts), for two targets:
  * `8 dev (1x8)`: a TPU v5e-8 / v4-8 running one model: `data=1, model=8`. 8B bf16 weights are
    16 GB, a v5e chip holds 16 GiB, so the weights must be split 8 ways (2 GB per chip), and
    the batch is not split (a data axis would replicate the weights);
  * `1 dev`: one 80 GB accelerator (H100), no mesh.
`compiled.memory_analysis()` of an SPMD program is per device: argument bytes (weights and
inputs), temp bytes (everything else the program allocates: KV cache, activations, logits).

XLA:CPU has no bf16 matmul: it converts bf16 weights to float32 and may hoist the converted
copies out of the loop, so the bf16 program's temp bytes on CPU can include a float32 copy of
the weights that an accelerator does not make. Each row therefore also compiles the float32
program (`temp f32`): every activation, cache and logit in float32 (weights too, but those
are arguments), an upper bound on the bf16 program's non-weight memory on an accelerator. A
program fits a device when `args (bf16) + temp f32 + outputs <= device memory` (the outputs
are small, except the GRPO rollout's recorded trajectory).

The last column is the largest all-gather in the compiled program (MiB per device, f32 program):
one that moved a weight would be >= one layer's kernel shard (48 MiB for 8B, 1x8, bf16).

The GRPO step is the policy trainer's: a rollout (`Policy(record=True)`, the dLLM frozen,
8 prompts x 8 rollouts = 64 rows, on the same sharded 8B model) and one policy update on its
whole recorded trajectory (all `gen` steps: the trainer truncates it to a power of two >= the
steps taken, so this is its worst case), on one device as `policy_rl.train` runs it and
data-parallel over the 8 devices (`data=8`), all (row, step) pairs at once (`--update-chunk 0`)
and in chunks of `GRPOConfig.update_chunk` pairs (default: the trainer's), with the
no-gradient `old_log_probs` pass of the same chunking (one device).
"""

from __future__ import annotations

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from lookum_jax.loading import DEFAULT_SCAN_LAYERS  # noqa: E402
from lookum_jax.model import llada_8b  # noqa: E402
from lookum_jax.model.llada import abstract_model  # noqa: E402
from lookum_jax.model.sharding import DATA_AXIS, make_mesh, param_shardings  # noqa: E402
from lookum_jax.sampling import SamplerConfig  # noqa: E402
from lookum_jax.sampling.lookum import LookUM  # noqa: E402
from lookum_jax.sampling.loop import _generate_jit  # noqa: E402
from lookum_jax.sampling.strategies import LowConfidence, Threshold  # noqa: E402
from policy_rl.grpo import GRPOConfig  # noqa: E402

GIB, MIB = 1024 ** 3, 1024 ** 2
STRATEGIES = ("low_confidence", "threshold", "lookum", "policy")
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1,
          "f64": 8, "s64": 8, "u64": 8}


def strategy(name: str, paths: int, record: bool = False):
  from policy_rl.strategy import Policy  # the policy package sits above the library

  return {"low_confidence": LowConfidence, "threshold": Threshold,
          "lookum": lambda: LookUM(paths=paths),
          "policy": lambda: Policy(record=record)}[name]()


def abstract_weights(model_config, dtype, scan: bool, mesh) -> tuple[nnx.GraphDef, nnx.State]:
  """The graph and `ShapeDtypeStruct` state of the model `load_model` builds, each leaf
  carrying its sharding on `mesh` (none for one device)."""
  model = abstract_model(model_config, dtype=dtype, param_dtype=dtype, scan_layers=scan)
  shardings = {} if mesh is None else param_shardings(model, mesh)
  graphdef, state = nnx.split(model)
  flat = nnx.to_flat_state(state)
  for path, variable in flat:
    value = variable.get_value()
    variable.set_value(jax.ShapeDtypeStruct(value.shape, value.dtype,
                                            sharding=shardings.get(path)))
  return graphdef, nnx.from_flat_state(flat)


def abstract_policy(mesh):
  from policy_rl import PolicyConfig, init_policy

  graphdef, state = nnx.split(nnx.eval_shape(lambda: init_policy(PolicyConfig())))
  replicated = None if mesh is None else NamedSharding(mesh, P())
  return graphdef, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)


def batch_inputs(batch: int, prompt: int, mesh):
  split = None if mesh is None else NamedSharding(mesh, P(DATA_AXIS))
  return (jax.ShapeDtypeStruct((batch, prompt), jnp.int32, sharding=split),
          jax.ShapeDtypeStruct((batch, prompt), jnp.bool_, sharding=split),
          jax.ShapeDtypeStruct((batch,), jax.random.key(0).dtype, sharding=split))


def largest_all_gather(hlo: str) -> float:
  """MiB of the largest all-gather result in an HLO module's text (0 if none)."""
  largest = 0
  for line in hlo.splitlines():
    op = re.search(r"=\s*(.*?)\s+all-gather(?:-start)?\(", line)
    if op is None:
      continue
    for dtype, dims in re.findall(r"([a-z]+[0-9]*)\[([0-9,]*)\]", op.group(1)):
      size = _BYTES.get(dtype, 4)
      for d in filter(None, dims.split(",")):
        size *= int(d)
      largest = max(largest, size)
  return largest / MIB


def compile_generate(model_config, sampler: SamplerConfig, batch: int, prompt: int, scan: bool,
                     dtype, mesh):
  """Lowers and compiles one generate program; (compiled, seconds, lowered)."""
  graphdef, weights = abstract_weights(model_config, dtype, scan, mesh)
  if sampler.strategy.needs_policy:  # the value carries the policy's (abstract) weights
    policy_graphdef, policy_weights = abstract_policy(mesh)
    sampler = sampler.replace(strategy=dataclasses.replace(
        sampler.strategy, graphdef=policy_graphdef, weights=policy_weights))
  ids = (model_config.mask_token_id, model_config.eos_token_id,
         tuple(model_config.stop_token_ids))
  start, cpu = time.perf_counter(), time.process_time()
  lowered = _generate_jit.lower(graphdef, weights, *batch_inputs(batch, prompt, mesh), None,
                                config=sampler, ids=ids)
  compiled = lowered.compile()
  return compiled, (time.perf_counter() - start, time.process_time() - cpu), lowered


def measure(model_config, sampler, batch, prompt, scan, mesh, dtype) -> dict:
  compiled, seconds, _ = compile_generate(model_config, sampler, batch, prompt, scan, dtype, mesh)
  memory = compiled.memory_analysis()
  row = dict(compile_s=seconds, argument=memory.argument_size_in_bytes,
             temp=memory.temp_size_in_bytes, output=memory.output_size_in_bytes)
  if dtype != jnp.float32:
    f32, f32_s, _ = compile_generate(model_config, sampler, batch, prompt, scan, jnp.float32,
                                     mesh)
    row.update(temp_f32=f32.memory_analysis().temp_size_in_bytes,
               gather=largest_all_gather(f32.as_text()))
  return row


def abstract_trajectory(rows: int, gen: int):
  """The `ShapeDtypeStruct`s of a recorded trajectory of `rows` rows and all `gen` steps."""
  from policy_rl import PolicyConfig
  from policy_rl.strategy import Trajectory

  sds = jax.ShapeDtypeStruct
  features = len(PolicyConfig().features)
  return Trajectory(token_features=sds((rows, gen, gen, features), jnp.float32),
                    masked=sds((rows, gen, gen), jnp.bool_), time=sds((rows, gen), jnp.float32),
                    eligible=sds((rows, gen, gen), jnp.bool_),
                    actions=sds((rows, gen, gen), jnp.bool_), valid=sds((rows, gen), jnp.bool_))


def measure_rollout(model_config, args, mesh, block: int, dtype) -> tuple[dict, object]:
  """The recorded rollout of one GRPO step; (its row, its trajectory's shapes)."""
  rows = args.grpo_prompts * args.grpo_rollouts
  sampler = SamplerConfig(gen_length=args.gen, block_length=block, steps=args.gen,
                          strategy=strategy("policy", args.paths, record=True))
  out = []
  for program_dtype in (dtype, jnp.float32):
    compiled, seconds, lowered = compile_generate(model_config, sampler, rows, args.prompt,
                                                  not args.no_scan, program_dtype, mesh)
    memory = compiled.memory_analysis()
    out.append(dict(compile_s=seconds, argument=memory.argument_size_in_bytes,
                    temp=memory.temp_size_in_bytes, output=memory.output_size_in_bytes))
  return out[0] | dict(temp_f32=out[1]["temp"]), lowered.out_info.strategy_state.trajectory


def measure_update(args, trajectory, chunk: int | None) -> list[dict]:
  """The policy update on a whole recorded trajectory (all `gen` steps: the trainer truncates
  it to a power of two >= the steps taken, so this is its worst case) in chunks of `chunk`
  (row, step) pairs, on one device as `policy_rl.train` runs it and data-parallel over the 8
  devices; then the no-gradient `old_log_probs` pass on one device."""
  from policy_rl import PolicyConfig, init_policy
  from policy_rl.config import OptimConfig
  from policy_rl.grpo import GRPOConfig, PolicyTrainState
  from policy_rl.strategy import Policy
  from policy_rl.train import _log_probs, _update, make_optimizer

  rows = args.grpo_prompts * args.grpo_rollouts
  graphdef, params = nnx.split(nnx.eval_shape(lambda: init_policy(PolicyConfig())))
  grpo, optim = GRPOConfig(group_size=args.grpo_rollouts, update_chunk=chunk), OptimConfig()
  tx = make_optimizer(optim, 1000, grpo.updates_per_batch)
  state = jax.eval_shape(lambda p: PolicyTrainState(params=p, opt_state=tx.init(p),
                                                    step=jnp.zeros((), jnp.int32)), params)
  steps = trajectory.num_steps
  out = []

  def row(compiled, start, cpu):
    memory = compiled.memory_analysis()
    return dict(compile_s=(time.perf_counter() - start, time.process_time() - cpu),
                argument=memory.argument_size_in_bytes, temp=memory.temp_size_in_bytes,
                temp_f32=memory.temp_size_in_bytes, output=memory.output_size_in_bytes)

  for update_mesh in (None, make_mesh(data=jax.device_count(), model=1)):
    split = None if update_mesh is None else NamedSharding(update_mesh, P(DATA_AXIS))
    sds = lambda shape, dtype, split=split: jax.ShapeDtypeStruct(shape, dtype, sharding=split)
    inputs = (jax.tree.map(lambda x, sds=sds: sds(x.shape, x.dtype), trajectory), None,
              sds((rows,), jnp.float32), sds((rows, steps, args.gen), jnp.float32),
              sds((rows,), jnp.bool_))
    start, cpu = time.perf_counter(), time.process_time()
    compiled = _update.lower(graphdef, state, *inputs, params=Policy(record=True), grpo=grpo,
                             optim=optim, num_steps=1000).compile()
    out.append(row(compiled, start, cpu))
  start, cpu = time.perf_counter(), time.process_time()
  compiled = _log_probs.lower(graphdef, params, trajectory, None,
                              jax.ShapeDtypeStruct((rows,), jnp.bool_), params=Policy(),
                              mixture=grpo.mixture_weights, chunk=chunk).compile()
  out.append(row(compiled, start, cpu))
  return out


def fmt(row: dict) -> str:
  gather = f"{row['gather']:.1f}" if "gather" in row else "-"
  return (f"{row['argument'] / GIB:.2f} | {row['temp'] / GIB:.2f} | {row['temp_f32'] / GIB:.2f} "
          f"| {(row['argument'] + row['temp_f32'] + row['output']) / GIB:.2f} | "
          f"{row['compile_s'][0]:.1f} / {row['compile_s'][1]:.1f} | "
          f"{gather} |")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--gen", type=int, default=256)
  parser.add_argument("--block", type=int, default=32)
  parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
  parser.add_argument("--paths", type=int, default=3, help="LookUM K")
  parser.add_argument("--cache", nargs="+", default=["none", "prefix", "dual"])
  parser.add_argument("--devices", type=int, nargs="+", default=[8, 1], choices=[1, 8],
                      help="8: the (data 1, model 8) mesh; 1: one device")
  parser.add_argument("--mesh-data", type=int, default=1, help="data axis of the 8-device mesh")
  parser.add_argument("--no-scan", action="store_true", help="unrolled layers")
  parser.add_argument("--grpo-prompts", type=int, default=8)
  parser.add_argument("--grpo-rollouts", type=int, default=8)
  parser.add_argument("--grpo-only", action="store_true")
  parser.add_argument("--update-only", action="store_true",
                      help="of the GRPO step, only the policy update (no 8B rollouts)")
  parser.add_argument("--update-chunk", type=int, nargs="+",
                      default=[0, GRPOConfig().update_chunk],
                      help="GRPOConfig.update_chunk values to measure ((row, step) pairs per "
                      "chunk; 0: None, all pairs at once)")
  parser.add_argument("--no-grpo", action="store_true")
  args = parser.parse_args(argv)
  model_config, dtype = llada_8b(), jnp.dtype(jnp.bfloat16)
  scan = not args.no_scan
  meshes = {8: make_mesh(data=args.mesh_data, model=8 // args.mesh_data), 1: None}
  label = {8: f"8 dev ({args.mesh_data}x{8 // args.mesh_data})", 1: "1 dev"}
  print(f"llada-8b bf16, prompt {args.prompt}, gen {args.gen}, block {args.block}, "
        f"{'scanned' if scan else 'unrolled'} layers (load_model default: "
        f"{'scanned' if DEFAULT_SCAN_LAYERS else 'unrolled'}), backend {jax.default_backend()} "
        f"x{jax.device_count()}, jax {jax.__version__}; GiB per device")
  print("| target | program | cache | B | args GiB | temp GiB (bf16 on CPU) | temp GiB (f32 "
        "program) | args + temp f32 + out | compile s wall / CPU (bf16) | largest all-gather MiB |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  if not args.grpo_only:
    for devices in args.devices:
      for batch in args.batch:
        for name in args.strategy:
          for cache in args.cache:
            sampler = SamplerConfig(gen_length=args.gen, block_length=args.block,
                                    steps=args.gen, strategy=strategy(name, args.paths),
                                    cache=cache)
            row = measure(model_config, sampler, batch, args.prompt, scan, meshes[devices],
                          dtype)
            program = f"lookum K={args.paths}" if name == "lookum" else name
            print(f"| {label[devices]} | {program} | {cache} | {batch} | {fmt(row)}",
                  flush=True)
  if not args.no_grpo:
    rows = args.grpo_prompts * args.grpo_rollouts
    trajectory = abstract_trajectory(rows, args.gen)
    for block in () if args.update_only else (args.block, args.gen):
      kind = f"semi-AR blocks of {block}" if block < args.gen else "full diffusion"
      rollout, trajectory = measure_rollout(model_config, args, meshes[8], block, dtype)
      print(f"| {label[8]} | GRPO rollout, {kind} | none | {rows} | {fmt(rollout)}", flush=True)
    # The update's shapes do not depend on the block length.
    for chunk in args.update_chunk:
      update, update_dp, old = measure_update(args, trajectory, chunk or None)
      chunked = f", chunk {chunk}" if chunk else ""
      print(f"| 1 dev | GRPO update ({args.gen} steps{chunked}) | - | {rows} | {fmt(update)}")
      print(f"| 8 dev (8x1) | GRPO update ({args.gen} steps{chunked}) | - | {rows} | "
            f"{fmt(update_dp)}")
      print(f"| 1 dev | GRPO old log-probs{chunked} | - | {rows} | {fmt(old)}", flush=True)

if __name__ == "__main__":
  main()

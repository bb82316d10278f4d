"""Named sharding for LLaDA and Dream: a `data` x `model` device mesh and regex rules on
param paths, for both layer layouts.

Tensor parallelism follows the Megatron split: q/k/v/gate/up projections are split along
their output dim and attn_out/down along their input dim over `model`, so each block needs
one reduction per sub-layer; the embedding and head are split over the vocabulary; norms are
replicated. Batches are split over `data`. XLA (GSPMD) inserts the collectives.

Per-layer models hold `blocks/<i>/q_proj/kernel [D, H*hd]`; stacked (`scan_layers=True`)
models hold `blocks/q_proj/kernel [n_layers, D, H*hd]`. Every block rule exists in both
forms: the stacked one has a leading, unsharded layer axis, so each device holds its slice
of every layer and the scan never moves weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx, traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lookum_jax.model.config import ModelConfig
from lookum_jax.model.llada import LLaDA

DATA_AXIS = "data"
MODEL_AXIS = "model"

ParamPath = tuple[str | int, ...]
ShardingRules = tuple[tuple[str, P], ...]
"""`(regex, PartitionSpec)` pairs; the first regex that fully matches a param path wins."""

_LAYER = r"blocks/\d+/"


def with_layer_axis(rules: ShardingRules) -> ShardingRules:
  """`rules` plus, for each per-layer block rule (`blocks/\\d+/...`), its stacked form
  (`blocks/...`, spec with a leading unsharded layer axis)."""
  stacked = tuple((pattern.replace(_LAYER, "blocks/"), P(None, *spec))
                  for pattern, spec in rules if pattern.startswith(_LAYER))
  return (*rules, *stacked)


_KV = r"(k_proj|v_proj)"
LLADA_RULES: ShardingRules = with_layer_axis((
    (r"wte", P(MODEL_AXIS, None)),  # [V, D]: vocab
    (r"ff_out", P(None, MODEL_AXIS)),  # head [D, V]: vocab
    (_LAYER + r"(q_proj|k_proj|v_proj|ff_proj|up_proj)/kernel", P(None, MODEL_AXIS)),
    (_LAYER + r"(attn_out|ff_out)/kernel", P(MODEL_AXIS, None)),
    (_LAYER + r"(attn_norm|ff_norm)/weight", P()),
    (r"ln_f/weight", P()),
))

DREAM_RULES: ShardingRules = with_layer_axis((
    # q/k/v biases follow their kernels' output split.
    (_LAYER + r"(q_proj|k_proj|v_proj)/bias", P(MODEL_AXIS)),
    *LLADA_RULES,
))

# Grouped-query attention with fewer kv heads than the `model` axis (Dream-7B: 4 kv heads)
# keeps k/v whole on every device: splitting inside a head would cost a collective per layer.
_REPLICATED_KV: ShardingRules = with_layer_axis((
    (_LAYER + _KV + r"/(kernel|bias)", P()),
))


def sharding_rules(config: ModelConfig, mesh: Mesh | None = None) -> ShardingRules:
  """The parameter sharding rules for `config.architecture`; with a `mesh` whose `model`
  axis does not divide the kv heads, k/v projections are replicated."""
  rules = DREAM_RULES if config.architecture == "dream" else LLADA_RULES
  if mesh is not None and config.n_kv_heads % mesh.shape[MODEL_AXIS]:
    rules = (*_REPLICATED_KV, *rules)
  return rules


def check_mesh(config: ModelConfig, mesh: Mesh) -> None:
  """Refuses a mesh whose `model` axis does not divide the attention heads or the
  vocabulary (the split would cut a head, or leave the head's shards uneven)."""
  size = mesh.shape[MODEL_AXIS]
  problems = [f"{name} = {value}" for name, value in
              (("n_heads", config.n_heads), ("vocab_size", config.vocab_size)) if value % size]
  if problems:
    divisors = [m for m in range(2, size)
                if config.n_heads % m == 0 and config.vocab_size % m == 0] or [1]
    choices = " or ".join(filter(None, [", ".join(map(str, divisors[:-1])), str(divisors[-1])]))
    raise ValueError(
        f"the mesh's model axis ({size}) does not divide {' and '.join(problems)}; use a "
        f"model axis of {choices} (and a larger data axis), e.g. "
        f"make_mesh(model={divisors[-1]}).")


def make_mesh(data: int | None = None, model: int = 1, *,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `(data, model)` mesh; `data=None` uses every device left after `model`.

  Axes are `Auto` so jit propagates shardings (GSPMD) from the param placement.
  """
  devices = list(jax.devices() if devices is None else devices)
  if model <= 0 or (data is not None and data <= 0):
    raise ValueError(f"mesh sizes must be positive, got data={data}, model={model}.")
  if data is None:
    if len(devices) % model:
      raise ValueError(
          f"model={model} does not divide the {len(devices)} devices; pass data= explicitly.")
    data = len(devices) // model
  if data * model > len(devices):
    raise ValueError(
        f"mesh data={data} x model={model} needs {data * model} devices, have {len(devices)}.")
  auto = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh((data, model), (DATA_AXIS, MODEL_AXIS), axis_types=auto,
                       devices=devices[:data * model])


def _path_name(path: ParamPath) -> str:
  return "/".join(str(part) for part in path)


def partition_spec(path: ParamPath | str, shape: Sequence[int], mesh: Mesh,
                   rules: ShardingRules = LLADA_RULES) -> P:
  """The PartitionSpec of one param: the first rule matching its path.

  A dimension that its mesh axis does not divide is replicated instead (e.g. a head count
  smaller than the `model` axis), so any config can be placed on any mesh.
  """
  name = path if isinstance(path, str) else _path_name(path)
  matched = next((rule for rule in rules if re.fullmatch(rule[0], name)), None)
  if matched is None:
    stacked = re.match(r"blocks/[^0-9]", name) is not None
    hint = (" It is a stacked (scan_layers=True) param with a leading layer axis: give per-layer "
            "rules their stacked form with with_layer_axis(rules), or load with "
            "scan_layers=False." if stacked else "")
    raise ValueError(f"no sharding rule matches param {name!r}; add a (regex, PartitionSpec) "
                     f"pair for it to the rules.{hint}")
  pattern, spec = matched
  if len(spec) > len(shape):
    raise ValueError(f"sharding rule {pattern!r} gives {spec} for {name} of rank {len(shape)}.")
  axes = []
  for dim, axis in zip(shape[:len(spec)], spec, strict=True):
    names = () if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    axes.append(axis if dim % size == 0 else None)
  return P(*axes)


def param_shardings(model: LLaDA, mesh: Mesh, rules: ShardingRules | None = None
                    ) -> dict[ParamPath, NamedSharding]:
  """`{param path: NamedSharding}` for a (possibly abstract) model of either layout.

  `rules` default to `sharding_rules(model.config, mesh)`. A mesh whose model axis does not
  divide the heads or the vocabulary is refused (`check_mesh`).
  """
  config = getattr(model, "config", None)
  if isinstance(config, ModelConfig):
    check_mesh(config, mesh)
    rules = sharding_rules(config, mesh) if rules is None else rules
  elif rules is None:
    raise ValueError(f"{type(model).__name__} has no ModelConfig; pass its sharding rules.")
  _, state, _ = nnx.split(model, nnx.Param, ...)
  return {path: NamedSharding(mesh, partition_spec(path, var.get_value().shape, mesh, rules))
          for path, var in nnx.to_flat_state(state)}


def shard_model(model: nnx.Module, mesh: Mesh, rules: ShardingRules | None = None
                ) -> nnx.Module:
  """Places `model`'s params on `mesh` by `rules` (default: its config's), in place;
  returns the model. A model without a `.config` (a policy) needs explicit `rules`."""
  shardings = param_shardings(model, mesh, rules)
  _, state, _ = nnx.split(model, nnx.Param, ...)
  placed = {path: jax.device_put(var.get_value(), shardings[path])
            for path, var in nnx.to_flat_state(state)}
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(placed))
  nnx.update(model, state)
  return model


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Splits every array of `batch` (a pytree) over `data` along its leading dim."""
  data_size = mesh.shape[DATA_AXIS]

  def place(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim == 0 or x.shape[0] % data_size:
      raise ValueError(
          f"batch dim of an array with shape {x.shape} must be divisible by the data axis "
          f"({data_size}); pad the batch or use a smaller data axis.")
    return jax.device_put(x, NamedSharding(mesh, P(DATA_AXIS)))

  return jax.tree.map(place, batch)


# Env vars that mean "this process is one of several" (jax auto-detects these clusters).
_CLUSTER_ENV = {
    "SLURM_NTASKS": "SLURM", "OMPI_COMM_WORLD_SIZE": "Open MPI", "PMI_SIZE": "MPICH",
}


def maybe_initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize()` when launched as one of several processes.

  Must run before anything touches a JAX backend. Explicit settings win:
  `JAX_COORDINATOR_ADDRESS` + `JAX_NUM_PROCESSES` + `JAX_PROCESS_ID`; otherwise a cluster
  launcher with more than one task (SLURM, MPI) or a multi-worker Cloud TPU lets JAX
  auto-detect. Returns whether it initialised.
  """
  env = os.environ if env is None else env
  if jax.distributed.is_initialized():
    return False
  if "JAX_COORDINATOR_ADDRESS" in env:
    missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in env]
    if missing:
      raise ValueError(f"JAX_COORDINATOR_ADDRESS is set but {missing} are not; set all three.")
    jax.distributed.initialize(
        coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(env["JAX_NUM_PROCESSES"]), process_id=int(env["JAX_PROCESS_ID"]))
    return True
  multi_task = any(int(env.get(var, "1") or 1) > 1 for var in _CLUSTER_ENV)
  multi_tpu_worker = "," in env.get("TPU_WORKER_HOSTNAMES", "")
  if multi_task or multi_tpu_worker:
    jax.distributed.initialize()
    return True
  return False

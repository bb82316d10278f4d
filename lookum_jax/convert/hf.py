"""Reads LLaDA (and Dream) Hugging Face checkpoints (config.json + safetensors) into NNX models.

An explicit table maps every checkpoint tensor to its NNX param path with a per-key
transform. Loading builds the abstract model (`nnx.eval_shape`, no memory), checks every
tensor's name and shape against it from the safetensors headers alone, then builds each
device array from its shard's slice of the (memory-mapped) files: a stacked param
(`scan_layers=True`) is written layer by layer into its slice, so the host never holds the
model, nor even one whole param, beyond the device copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util
from safetensors import SafetensorError, safe_open

from lookum_jax.convert import checkpoint
from lookum_jax.convert.checkpoint import ParamPath
from lookum_jax.model.config import ModelConfig
from lookum_jax.model.llada import abstract_model

HF_PREFIX = "model.transformer."
INDEX_FILE = "model.safetensors.index.json"

IDENTITY = "identity"
TRANSPOSE = "transpose"  # PyTorch Linear `[out, in]` -> NNX kernel `[in, out]`

_BLOCK_NORMS = ("attn_norm", "ff_norm")
_BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")

# safetensors dtype -> dtype to hold params in when the caller does not choose one.
_FLOAT_DTYPES = {"BF16": jnp.bfloat16, "F16": jnp.float16, "F32": jnp.float32,
                 "F64": jnp.float32}


@dataclasses.dataclass(frozen=True)
class ParamMapping:
  """One checkpoint tensor: its Hugging Face name, NNX param path and layout transform."""

  hf_name: str
  path: ParamPath
  transform: str = IDENTITY

  def to_nnx(self, array: np.ndarray) -> np.ndarray:
    return array.T if self.transform == TRANSPOSE else array

  def hf_shape(self, nnx_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(nnx_shape)) if self.transform == TRANSPOSE else tuple(nnx_shape)


def param_mappings(config: ModelConfig) -> tuple[ParamMapping, ...]:
  """The full HF -> NNX table for `config` (one entry per checkpoint tensor)."""
  if config.architecture == "dream":
    return dream_param_mappings(config)
  table = [ParamMapping(f"{HF_PREFIX}wte.weight", ("wte",))]  # [V, D] both sides
  for i in range(config.n_layers):
    block = f"{HF_PREFIX}blocks.{i}"
    table += [ParamMapping(f"{block}.{norm}.weight", ("blocks", i, norm, "weight"))
              for norm in _BLOCK_NORMS]
    table += [ParamMapping(f"{block}.{linear}.weight", ("blocks", i, linear, "kernel"), TRANSPOSE)
              for linear in _BLOCK_LINEARS]
  table.append(ParamMapping(f"{HF_PREFIX}ln_f.weight", ("ln_f", "weight")))
  # Output head: HF `[V, D]` -> NNX `[D, V]`.
  table.append(ParamMapping(f"{HF_PREFIX}ff_out.weight", ("ff_out",), TRANSPOSE))
  return tuple(table)


# Dream (Qwen2) names per block: HF module -> (NNX module, transform of its `weight`).
_DREAM_BLOCK_LINEARS = {
    "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
    "mlp.down_proj": "ff_out",
}
_DREAM_BLOCK_NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ff_norm"}


def dream_param_mappings(config: ModelConfig) -> tuple[ParamMapping, ...]:
  """Dream's HF (Qwen2 names) -> NNX table: `model.embed_tokens`, `model.layers.{i}.*`,
  `model.norm`, and `lm_head` unless the embeddings are tied."""
  table = [ParamMapping("model.embed_tokens.weight", ("wte",))]
  for i in range(config.n_layers):
    layer = f"model.layers.{i}"
    table += [ParamMapping(f"{layer}.{hf}.weight", ("blocks", i, ours, "weight"))
              for hf, ours in _DREAM_BLOCK_NORMS.items()]
    table += [ParamMapping(f"{layer}.{hf}.weight", ("blocks", i, ours, "kernel"), TRANSPOSE)
              for hf, ours in _DREAM_BLOCK_LINEARS.items()]
    if config.qkv_bias:
      table += [ParamMapping(f"{layer}.self_attn.{proj}.bias", ("blocks", i, proj, "bias"))
                for proj in ("q_proj", "k_proj", "v_proj")]
  table.append(ParamMapping("model.norm.weight", ("ln_f", "weight")))
  if not config.tie_word_embeddings:
    table.append(ParamMapping("lm_head.weight", ("ff_out",), TRANSPOSE))
  return tuple(table)


def expected_hf_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
  """`{hf_name: shape}` a checkpoint for `config` must contain, in PyTorch layout."""
  nnx_shapes = checkpoint.param_shapes(abstract_model(config))
  table = param_mappings(config)
  _check_table_covers_model(table, nnx_shapes)
  return {m.hf_name: m.hf_shape(nnx_shapes[m.path]) for m in table}


def _check_table_covers_model(table: tuple[ParamMapping, ...],
                              nnx_shapes: Mapping[ParamPath, Any]) -> None:
  mapped = {m.path for m in table}
  if mapped != set(nnx_shapes):
    unmapped = sorted(checkpoint.path_name(p) for p in set(nnx_shapes) - mapped)
    stale = sorted(checkpoint.path_name(p) for p in mapped - set(nnx_shapes))
    raise RuntimeError(
        f"HF mapping table is out of date with the model: params without an entry {unmapped}, "
        f"entries without a param {stale}. Update lookum_jax.convert.hf.param_mappings.")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """Where a tensor lives and what its header says (read without loading the data)."""

  file: Path
  shape: tuple[int, ...]
  dtype: str


def safetensors_files(hf_dir: str | os.PathLike) -> list[Path]:
  """The safetensors files of a checkpoint: from the index json if any, else every file."""
  hf_dir = Path(hf_dir)
  index_path = hf_dir / INDEX_FILE
  if index_path.is_file():
    try:
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise ValueError(f"{index_path} is not a valid safetensors index (needs 'weight_map'): "
                       f"{e!r}") from e
    files = [hf_dir / name for name in sorted(set(weight_map.values()))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
      raise ValueError(f"{index_path} names shard files that do not exist: {missing}.")
    return files
  files = sorted(hf_dir.glob("*.safetensors"))
  if not files:
    raise ValueError(
        f"{hf_dir} has no *.safetensors files (nor {INDEX_FILE}); pass the directory of a "
        "LLaDA Hugging Face checkpoint.")
  return files


def read_tensor_index(hf_dir: str | os.PathLike) -> dict[str, TensorInfo]:
  """`{name: TensorInfo}` over all shards, from the headers only.

  Raises ValueError naming the file for a truncated or corrupt safetensors file, and for a
  tensor stored in two shards.
  """
  index: dict[str, TensorInfo] = {}
  duplicates = []
  for file in safetensors_files(hf_dir):
    try:
      with safe_open(file, framework="numpy") as f:
        for name in f.keys():
          tensor = f.get_slice(name)
          info = TensorInfo(file, tuple(tensor.get_shape()), tensor.get_dtype())
          if name in index:
            duplicates.append(f"{name} in {index[name].file.name} and {file.name}")
          index[name] = info
    except SafetensorError as e:
      raise ValueError(
          f"safetensors file {file} is truncated or corrupt ({e}); re-download or re-export "
          "it.") from e
  if duplicates:
    raise ValueError(f"tensors stored in more than one shard of {hf_dir}: {duplicates}.")
  return index


def load_hf_checkpoint(hf_dir: str | os.PathLike, *, dtype: Any = None, param_dtype: Any = None,
                       shardings: Mapping[ParamPath, jax.sharding.Sharding] | None = None,
                       scan_layers: bool = False) -> nnx.Module:
  """Loads a LLaDA (or Dream) Hugging Face checkpoint directory into a LLaDA (Dream) model.

  Args:
    hf_dir: directory with `config.json` and `*.safetensors` (sharded with
      `model.safetensors.index.json`, sharded without it, or a single `model.safetensors`).
    dtype: compute dtype; None uses the parameter dtype.
    param_dtype: dtype to hold the params in; None keeps the checkpoint's dtype (float32 if
      its tensors have mixed dtypes).
    shardings: optional `{param path: sharding}` (paths of the chosen layout) placing each
      param as it is read: each device reads only its own shard.
    scan_layers: build the stacked layout (`blocks/q_proj/kernel [n_layers, ...]`), each
      layer's tensors read into their slice of the stacked arrays.
  Raises:
    ValueError: listing every missing, unexpected or mis-shaped tensor at once; naming a
      truncated/corrupt file; or the ModelConfig error for an inconsistent config.json.
  """
  hf_dir = Path(hf_dir)
  config = checkpoint.read_model_config(hf_dir)
  index = read_tensor_index(hf_dir)
  expected = expected_hf_shapes(config)
  bad_dtypes = [f"tensor {name} has non-float dtype {info.dtype}"
                for name, info in sorted(index.items())
                if name in expected and info.dtype not in _FLOAT_DTYPES]
  checkpoint.check_names_and_shapes(
      str(hf_dir), {name: info.shape for name, info in index.items()}, expected, bad_dtypes)

  if param_dtype is None:
    stored = {_FLOAT_DTYPES[info.dtype] for info in index.values()}
    param_dtype = stored.pop() if len(stored) == 1 else jnp.float32
  param_dtype = jnp.dtype(param_dtype)
  dtype = param_dtype if dtype is None else jnp.dtype(dtype)
  shardings = shardings or {}
  model = abstract_model(config, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers)
  shapes = checkpoint.param_shapes(model)
  sources: dict[ParamPath, list[ParamMapping]] = {}
  for mapping in param_mappings(config):
    path = checkpoint.stacked_path(mapping.path) if scan_layers else mapping.path
    sources.setdefault(path, []).append(mapping)  # in layer order

  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  params: dict[ParamPath, jax.Array] = {}
  with contextlib.ExitStack() as files:
    handles: dict[Path, Any] = {}

    def read(mapping: ParamMapping, index: tuple[slice, ...]) -> np.ndarray:
      """The `index` slice (NNX layout) of one checkpoint tensor, read from the mmap."""
      file = index_of[mapping.hf_name].file
      if file not in handles:
        handles[file] = files.enter_context(safe_open(file, framework="numpy"))
      hf_index = tuple(reversed(index)) if mapping.transform == TRANSPOSE else index
      return mapping.to_nnx(handles[file].get_slice(mapping.hf_name)[hf_index])

    index_of = index
    for path, mappings in sources.items():
      shape = shapes[path]
      stacked = scan_layers and path[0] == "blocks"

      def shard(idx, mappings=mappings, shape=shape, stacked=stacked) -> np.ndarray:
        idx = tuple(idx) + (slice(None),) * (len(shape) - len(idx))
        if not stacked:
          return np.ascontiguousarray(read(mappings[0], idx[:len(shape)]), dtype=param_dtype)
        layers = range(shape[0])[idx[0]]
        out = np.empty((len(layers), *_sliced_shape(shape[1:], idx[1:])), param_dtype)
        for j, layer in enumerate(layers):  # each layer into its slice: no second copy
          out[j] = read(mappings[layer], idx[1:])
        return out

      params[path] = jax.make_array_from_callback(shape, shardings.get(path, default), shard)

  graphdef, state = nnx.split(model)
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(params))
  return nnx.merge(graphdef, state)


def _sliced_shape(shape: tuple[int, ...], index: tuple[slice, ...]) -> tuple[int, ...]:
  return tuple(len(range(n)[i]) for n, i in zip(shape, index, strict=True))


def convert_checkpoint(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       dtype: Any = jnp.bfloat16, overwrite: bool = False) -> Path:
  """Converts a LLaDA Hugging Face checkpoint to the orbax format, atomically.

  Writes `out_dir/params` (orbax), `out_dir/config.json` and copies of the tokenizer files
  present in `hf_dir`. On any error no partial `out_dir` is left.

  Args:
    hf_dir: the Hugging Face checkpoint directory.
    out_dir: target directory; refused if it exists unless `overwrite`.
    dtype: dtype the params are stored in (bfloat16 halves the size of float32).
    overwrite: replace an existing `out_dir` once the new one is complete.
  Returns:
    The absolute path of the converted directory.
  """
  hf_dir, out = Path(hf_dir), Path(out_dir).absolute()
  if not hf_dir.is_dir():
    raise ValueError(f"{hf_dir} is not a directory; pass a local Hugging Face checkpoint dir.")
  if out.resolve() == hf_dir.resolve() or out.resolve() in hf_dir.resolve().parents:
    raise ValueError(f"output directory {out} must not contain the input {hf_dir}; "
                     "replacing it would delete the checkpoint being converted.")
  checkpoint.check_output_directory(out, overwrite=overwrite)
  model = load_hf_checkpoint(hf_dir, param_dtype=dtype, scan_layers=True)
  return checkpoint.save_model(model, out, overwrite=overwrite, tokenizer=hf_dir)

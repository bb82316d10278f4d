"""The converted checkpoint format: an orbax params tree, `config.json` and tokenizer files.

Layout of a converted directory::

    config.json        ModelConfig.to_hf_config(), LLaDA's (or Dream's) own format
    params/            orbax StandardCheckpointer tree of the NNX params
    tokenizer*.json    copied from the source checkpoint (if present)

Writes are atomic: everything goes to a temporary directory beside the target, which is
renamed into place at the end, so a failed write leaves no partial directory behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx, traverse_util

from lookum_jax.model.config import ModelConfig
from lookum_jax.model.llada import abstract_model

PARAMS_DIR = "params"
CONFIG_FILE = "config.json"

# Files a Hugging Face tokenizer needs (fast and slow tokenizers, chat templates).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json", "generation_config.json",
)
TOKENIZER_DIRS = ("additional_chat_templates",)

ParamPath = tuple[str | int, ...]


def path_name(path: ParamPath) -> str:
  """`('blocks', 0, 'q_proj', 'kernel')` -> `'blocks/0/q_proj/kernel'`."""
  return "/".join(str(part) for part in path)


def stacked_path(path: ParamPath) -> ParamPath:
  """A per-layer param's path in the stacked layout: `('blocks', 3, 'q_proj', 'kernel')` ->
  `('blocks', 'q_proj', 'kernel')`; other paths unchanged."""
  if len(path) > 2 and path[0] == "blocks" and str(path[1]).isdigit():
    return (path[0], *path[2:])
  return path


# A layer index in a checkpoint name: HF `blocks.3.` / `layers.3.`, ours `blocks/3/`.
_LAYER_INDEX = re.compile(r"(?:blocks|layers)[./](\d+)[./]")


def _missing_layers(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
  """One line for layers the config expects of which the checkpoint has no tensor at all."""
  layers = lambda names: {int(m.group(1)) for n in names if (m := _LAYER_INDEX.search(n))}
  want, have = layers(expected), layers(found)
  missing = sorted(want - have)
  if not missing or not have:
    return []
  return [f"layers {missing} are missing entirely: config.json says n_layers = {len(want)}, "
          f"the checkpoint holds {len(have)} layer(s) ({min(have)}..{max(have)}); add the "
          "shard file(s) holding them, or set n_layers in config.json if the checkpoint is "
          "complete"]


def param_shapes(model: nnx.Module) -> dict[ParamPath, tuple[int, ...]]:
  """Flat `{path: shape}` of a (possibly abstract) model's parameters."""
  _, state, _ = nnx.split(model, nnx.Param, ...)
  return {path: tuple(var.get_value().shape) for path, var in nnx.to_flat_state(state)}


def check_names_and_shapes(source: str, found: Mapping[str, tuple[int, ...]],
                           expected: Mapping[str, tuple[int, ...]],
                           extra_problems: list[str] | tuple[str, ...] = ()) -> None:
  """Raises one ValueError listing every missing, unexpected and mis-shaped tensor.

  Args:
    source: what was read (a directory), named in the message.
    found: tensor name -> shape as stored.
    expected: tensor name -> shape the model config requires.
    extra_problems: further lines to report in the same error (e.g. bad dtypes).
  """
  problems = [*_missing_layers(found, expected), *extra_problems]
  for name in sorted(expected.keys() - found.keys()):
    problems.append(f"missing tensor {name} (expected shape {list(expected[name])})")
  for name in sorted(found.keys() - expected.keys()):
    problems.append(f"unexpected tensor {name} (shape {list(found[name])})")
  for name in sorted(expected.keys() & found.keys()):
    if tuple(found[name]) != tuple(expected[name]):
      problems.append(
          f"wrong shape for {name}: expected {list(expected[name])}, got {list(found[name])}")
  if problems:
    listing = "\n  ".join(problems)
    raise ValueError(
        f"checkpoint {source} does not match its config.json ({len(problems)} problem(s)):\n"
        f"  {listing}\nFix the checkpoint files or config.json so they describe the same "
        "architecture.")


def read_model_config(directory: str | os.PathLike) -> ModelConfig:
  """ModelConfig from `directory/config.json`, naming the file in any error."""
  config_path = Path(directory) / CONFIG_FILE
  if not config_path.is_file():
    raise ValueError(f"{directory} has no {CONFIG_FILE}; a model checkpoint directory needs one.")
  try:
    return ModelConfig.from_json_file(config_path)
  except ValueError as e:
    raise ValueError(f"{config_path}: {e}") from e


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
  """Yields a fresh temporary directory that replaces `out_dir` when the block succeeds.

  The temporary directory lives beside `out_dir` (same filesystem, so the final rename is
  atomic) and is deleted if the block raises. An existing `out_dir` is refused unless
  `overwrite`, in which case it is replaced only after the new one is complete.
  """
  out = Path(out_dir).absolute()
  check_output_directory(out, overwrite=overwrite)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
  try:
    yield tmp
    if out.exists():
      old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
      os.rename(out, old)
      try:
        os.rename(tmp, out)
      except BaseException:
        os.rename(old, out)
        raise
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def check_output_directory(out_dir: str | os.PathLike, *, overwrite: bool) -> None:
  """Refuses to write over an existing path unless `overwrite` (and never over a file)."""
  out = Path(out_dir)
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"output path {out} exists and is not a directory; choose another.")
  if out.exists() and not overwrite:
    raise FileExistsError(
        f"output directory {out} already exists; pass overwrite=True (CLI: --overwrite) to "
        "replace it, or choose another path.")


def copy_tokenizer_files(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> list[str]:
  """Copies the tokenizer files present in `src_dir`; returns the names copied."""
  src, dst = Path(src_dir), Path(dst_dir)
  copied = []
  for name in TOKENIZER_FILES:
    if (src / name).is_file():
      shutil.copy2(src / name, dst / name)
      copied.append(name)
  for name in TOKENIZER_DIRS:
    if (src / name).is_dir():
      shutil.copytree(src / name, dst / name)
      copied.append(name)
  return copied


def is_converted_checkpoint(directory: str | os.PathLike) -> bool:
  path = Path(directory)
  return (path / PARAMS_DIR).is_dir() and (path / CONFIG_FILE).is_file()


def save_model(model: nnx.Module, out_dir: str | os.PathLike, *, overwrite: bool = False,
               tokenizer: Any = None) -> Path:
  """Writes `model` in the converted format (orbax params + config.json), atomically.

  Args:
    model: the model to save; its params are stored in their current dtype.
    out_dir: target directory; refused if it exists unless `overwrite`.
    overwrite: replace an existing `out_dir` (only once the new one is complete).
    tokenizer: optional tokenizer to store beside the weights: a directory whose tokenizer
      files are copied, or an object with `save_pretrained` (a transformers tokenizer).
  Returns:
    The absolute path of the written directory.
  """
  out = Path(out_dir).absolute()
  _, state, _ = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(state)
  with atomic_directory(out, overwrite=overwrite) as tmp:
    checkpointer = ocp.StandardCheckpointer()
    try:
      checkpointer.save(tmp / PARAMS_DIR, params)
      checkpointer.wait_until_finished()
    finally:
      checkpointer.close()
    with open(tmp / CONFIG_FILE, "w") as f:
      json.dump(model.config.to_hf_config(), f, indent=2)
      f.write("\n")
    if tokenizer is not None:
      if isinstance(tokenizer, (str, os.PathLike)):
        copy_tokenizer_files(tokenizer, tmp)
      else:
        tokenizer.save_pretrained(str(tmp))
  return out


def _stored_params(params_dir: Path) -> dict[str, Any]:
  """`{'blocks/0/q_proj/kernel': array metadata}` of an orbax tree, without reading arrays."""
  checkpointer = ocp.StandardCheckpointer()
  try:
    metadata = checkpointer.metadata(params_dir.absolute())
  except Exception as e:  # orbax raises several types for unreadable metadata
    raise ValueError(f"cannot read the orbax checkpoint {params_dir}: {e}") from e
  finally:
    checkpointer.close()
  tree = getattr(metadata, "item_metadata", metadata)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  # orbax stores list indices as strings, so compare by the printed path.
  return {path_name(tuple(getattr(k, "key", k) for k in path)): meta for path, meta in leaves}


def stored_layout(names: Any) -> bool | None:
  """Whether a converted checkpoint's param names are stacked (`blocks/q_proj/kernel`),
  per-layer (`blocks/0/q_proj/kernel`), or neither (None: no block params)."""
  blocks = [n for n in names if n.startswith("blocks/")]
  if not blocks:
    return None
  per_layer = {n.split("/")[1].isdigit() for n in blocks}
  if len(per_layer) > 1:
    raise ValueError(
        "the checkpoint mixes stacked (blocks/<name>) and per-layer (blocks/<i>/<name>) block "
        "params; re-save it from one model with save_model, or re-convert it with lookum "
        "convert.")
  return not per_layer.pop()


def load_converted(directory: str | os.PathLike, *, dtype: Any = None, param_dtype: Any = None,
                   shardings: Mapping[ParamPath, jax.sharding.Sharding] | None = None,
                   scan_layers: bool = False) -> nnx.Module:
  """Loads a converted checkpoint into a LLaDA (or Dream, by its config) model.

  Args:
    directory: a directory written by `save_model` / `convert_checkpoint`.
    dtype: compute dtype; None uses the parameter dtype.
    param_dtype: dtype to hold the params in; None keeps the stored dtype.
    shardings: optional `{param path: sharding}` (paths of the chosen layout) to restore
      each param directly in place.
    scan_layers: the layout to build. A checkpoint stored in the same layout is restored in
      one call; one stored in the other is restored one param group at a time (the
      `n_layers` per-layer arrays of one stacked param, or one stacked param) and stacked or
      sliced on its devices, so the extra memory is one param group, never the model.
  """
  directory = Path(directory)
  config = read_model_config(directory)
  stored = _stored_params(directory / PARAMS_DIR)
  found = {name: tuple(meta.shape) for name, meta in stored.items()}
  if param_dtype is None:
    stored_dtypes = {jnp.dtype(meta.dtype) for meta in stored.values()}
    param_dtype = stored_dtypes.pop() if len(stored_dtypes) == 1 else jnp.float32
  param_dtype = jnp.dtype(param_dtype)
  dtype = param_dtype if dtype is None else jnp.dtype(dtype)
  stacked = stored_layout(found)
  stacked = scan_layers if stacked is None else stacked
  on_disk = param_shapes(abstract_model(config, scan_layers=stacked))
  check_names_and_shapes(str(directory), found,
                         {path_name(path): shape for path, shape in on_disk.items()})
  model = abstract_model(config, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers)
  expected = param_shapes(model)
  shardings = dict(shardings or {})
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  params_dir = (directory / PARAMS_DIR).absolute()
  if stacked == scan_layers:
    params = _restore(params_dir, {path: jax.ShapeDtypeStruct(
        shape, param_dtype, sharding=shardings.get(path, default))
        for path, shape in expected.items()})
  else:
    params = _restore_other_layout(params_dir, expected, param_dtype, shardings, default,
                                   config.n_layers, scan_layers)
  graphdef, state = nnx.split(model)
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(params))
  return nnx.merge(graphdef, state)


def _restore(params_dir: Path, targets: Mapping[ParamPath, jax.ShapeDtypeStruct]
             ) -> dict[ParamPath, jax.Array]:
  """Restores the params at `targets`' paths (any subset of the stored tree) straight onto
  their shardings, cast to their dtypes."""
  item = traverse_util.unflatten_dict(dict(targets))
  restore_args = jax.tree.map(
      lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding, dtype=t.dtype, global_shape=t.shape),
      item)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    restored = checkpointer.restore(params_dir, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
  finally:
    checkpointer.close()
  return traverse_util.flatten_dict(restored)


def _restore_other_layout(params_dir: Path, expected: Mapping[ParamPath, tuple[int, ...]],
                          param_dtype: Any, shardings: Mapping, default: Any, n_layers: int,
                          scan_layers: bool) -> dict[ParamPath, jax.Array]:
  """Restores a checkpoint stored in the other layer layout, one param group at a time."""
  params: dict[ParamPath, jax.Array] = {}
  groups: dict[ParamPath, list[ParamPath]] = {}
  for path in expected:
    groups.setdefault(stacked_path(path), []).append(path)
  for group, paths in groups.items():
    if group[0] != "blocks":  # embedding, final norm, head: the same in both layouts
      (path,) = paths
      params.update(_restore(params_dir, {path: jax.ShapeDtypeStruct(
          expected[path], param_dtype, sharding=shardings.get(path, default))}))
    elif scan_layers:  # per-layer on disk -> one stacked param
      (path,) = paths
      sharding = shardings.get(path, default)
      layer_sharding = _drop_layer_axis(sharding)
      layers = [(group[0], i, *group[1:]) for i in range(n_layers)]
      got = _restore(params_dir, {p: jax.ShapeDtypeStruct(
          expected[path][1:], param_dtype, sharding=layer_sharding) for p in layers})
      params[path] = jax.jit(lambda *xs: jnp.stack(xs), out_shardings=sharding)(
          *[got[p] for p in layers])
    else:  # stacked on disk -> per-layer params
      paths = sorted(paths, key=lambda p: int(p[1]))
      layer_sharding = shardings.get(paths[0], default)
      sharding = _add_layer_axis(layer_sharding)
      stacked = _restore(params_dir, {group: jax.ShapeDtypeStruct(
          (n_layers, *expected[paths[0]]), param_dtype, sharding=sharding)})[group]
      unstack = jax.jit(lambda x: tuple(x[i] for i in range(n_layers)),
                        out_shardings=tuple(shardings.get(p, default) for p in paths))
      params.update(zip(paths, unstack(stacked), strict=True))
  return params


def _drop_layer_axis(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(
        *sharding.spec[1:]))
  return sharding


def _add_layer_axis(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(
        None, *sharding.spec))
  return sharding

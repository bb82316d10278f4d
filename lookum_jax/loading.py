"""Loading models and tokenizers from local directories or the package's embedded models.

`load_model` accepts a converted checkpoint (orbax, written by `save_model` or
`lookum convert`), a LLaDA Hugging Face checkpoint (safetensors), or the name of a model
embedded under `lookum_jax/assets/<name>/`. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

from lookum_jax.checkfiles import check_model_dir
from lookum_jax.convert import checkpoint, hf
from lookum_jax.convert.checkpoint import save_model
from lookum_jax.model.llada import abstract_model
from lookum_jax.model.sharding import ShardingRules, param_shardings

__all__ = ["apply_chat_template", "available_models", "load_model", "load_tokenizer",
           "resolve_path", "save_model"]


# Any one of these means a directory holds a tokenizer.
_TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _assets_root() -> Path:
  return Path(str(importlib.resources.files("lookum_jax") / "assets"))


def available_models() -> list[str]:
  """Names of the models embedded in the package (`lookum_jax/assets/<name>/config.json`)."""
  root = _assets_root()
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if (p / checkpoint.CONFIG_FILE).is_file())


def resolve_path(path_or_name: str | os.PathLike) -> Path:
  """A local checkpoint directory, or the directory of an embedded model by that name."""
  path = Path(path_or_name).expanduser()
  if path.is_dir():
    return path
  names = available_models()
  if str(path_or_name) in names:
    return _assets_root() / str(path_or_name)
  if path.exists():
    raise ValueError(f"{path} is a file; pass the checkpoint's directory.")
  raise ValueError(
      f"{str(path_or_name)!r} is not an existing local directory, nor an embedded model "
      f"(available: {', '.join(names) if names else 'none'}). lookum-jax never downloads from "
      "a model hub: download the checkpoint yourself and pass its local directory.")


# The layer layout `load_model` builds when the caller does not choose (see its docstring).
DEFAULT_SCAN_LAYERS = True


def load_model(path: str | os.PathLike, *, dtype: Any = None, param_dtype: Any = None,
               mesh: Any = None, rules: ShardingRules | None = None,
               scan_layers: bool | None = None) -> Any:
  """Loads a LLaDA (or Dream) model, with `.config`, from a local directory or an embedded
  model name; the architecture comes from `config.json`.

  Args:
    path: a converted checkpoint directory (`params/` + `config.json`), a Hugging Face
      checkpoint directory (`config.json` + `*.safetensors`), or an embedded model's name.
    dtype: compute dtype (e.g. `jnp.bfloat16` on accelerators, `jnp.float32` on CPU);
      None computes in the parameter dtype.
    param_dtype: dtype to hold the params in; None keeps the checkpoint's dtype.
    mesh: optional `jax.sharding.Mesh` (see `make_mesh`); params are placed on it by `rules`
      as they are read, so no device ever holds the full model unless the rules replicate.
    rules: sharding rules used with `mesh` (default: the architecture's, e.g. LLADA_RULES,
      which cover both layouts). A mesh whose model axis does not divide the heads or the
      vocabulary is refused before anything is read.
    scan_layers: the layer layout to build, from either checkpoint kind and either stored
      layout. True: the blocks stacked on a leading layer axis and run with `lax.scan`;
      False: one module per layer, unrolled. None (the default) is `DEFAULT_SCAN_LAYERS`,
      True, chosen from `experiments/bench_memory.py` (LLaDA-8B bf16, B=8, P=512, G=256,
      dual cache, emulated 8-device (1x8) mesh, per device): scanned LookUM K=3 needs 1.15 GiB
      of float32-program temp memory and 10 s of CPU to compile, unrolled 1.55 GiB and 47 s
      (threshold: 1.15 vs 1.53 GiB, 5 vs 26 s). XLA keeps one layer's buffers live instead of
      scheduling 32 layers at once, and compiles one layer instead of 32 (MaxText scans by
      default for the same reason). The logits equal the unrolled ones up to float rounding
      (XLA fuses the scanned body differently). Only single-device XLA:CPU compiled the
      scanned LookUM program more slowly (21.7 vs 13.0 s, issue #20); pass
      `scan_layers=False` where that matters, or where code indexes `model.blocks[i]`.
  """
  directory = resolve_path(path)
  scan_layers = DEFAULT_SCAN_LAYERS if scan_layers is None else bool(scan_layers)
  shardings = None
  if mesh is not None:
    config = checkpoint.read_model_config(directory)
    shardings = param_shardings(abstract_model(config, scan_layers=scan_layers), mesh, rules)
  if checkpoint.is_converted_checkpoint(directory):
    check_model_dir(directory)  # one line naming a truncated or corrupt file, not orbax's
    return checkpoint.load_converted(directory, dtype=dtype, param_dtype=param_dtype,
                                     shardings=shardings, scan_layers=scan_layers)
  if (directory / hf.INDEX_FILE).is_file() or any(directory.glob("*.safetensors")):
    return hf.load_hf_checkpoint(directory, dtype=dtype, param_dtype=param_dtype,
                                 shardings=shardings, scan_layers=scan_layers)
  raise ValueError(
      f"{directory} is neither a converted checkpoint ({checkpoint.PARAMS_DIR}/ + "
      f"{checkpoint.CONFIG_FILE}) nor a Hugging Face checkpoint ({checkpoint.CONFIG_FILE} + "
      "*.safetensors).")


def load_tokenizer(path: str | os.PathLike) -> Any:
  """The Hugging Face tokenizer stored in a local checkpoint directory (never downloaded)."""
  directory = resolve_path(path)
  if not any((directory / name).is_file() for name in _TOKENIZER_MARKERS):
    raise ValueError(
        f"{directory} has no tokenizer files ({', '.join(_TOKENIZER_MARKERS)}); copy them "
        "from the original Hugging Face checkpoint.")
  from lookum_jax.tasks.tokenizer import quiet_transformers

  with quiet_transformers() as transformers:  # imported only when a tokenizer is needed
    # trust_remote_code=False: LLaDA repos ship modeling code we never need for a tokenizer.
    return transformers.AutoTokenizer.from_pretrained(
        str(directory), local_files_only=True, trust_remote_code=False)


def apply_chat_template(tokenizer: Any, text: str, *, add_generation_prompt: bool = True) -> str:
  """`text` as a single user turn in the tokenizer's chat template (Instruct models).

  Returns `text` unchanged when the tokenizer has no chat template (Base models).
  """
  if not getattr(tokenizer, "chat_template", None):
    return text
  return tokenizer.apply_chat_template(
      [{"role": "user", "content": text}], add_generation_prompt=add_generation_prompt,
      tokenize=False)

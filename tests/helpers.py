"""Test helpers: tiny random LLaDA checkpoints in Hugging Face format, and a toy tokenizer.

`write_hf_checkpoint` writes exactly what a LLaDA Hugging Face repository holds (config.json,
safetensors with `model.transformer.*` names in PyTorch `[out, in]` layout, optionally
sharded with an index json), so conversion and loading are tested on the real format.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from lookum_jax.convert.hf import HF_PREFIX, INDEX_FILE, expected_hf_shapes
from lookum_jax.model.config import ModelConfig

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|eot|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}")


@nnx.jit
def forward(model: nnx.Module, tokens: jax.Array, attention_mask: jax.Array | None = None
            ) -> jax.Array:
  """`model(tokens, attention_mask)` jitted: one compile per shape instead of one per op,
  and models with the same config share it."""
  return model(tokens, attention_mask)


def random_hf_tensors(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
  """Random float32 weights in HF layout, scaled so activations and logits are O(1).

  (The usual 0.02 init gives near-uniform logits that would hide layout bugs.) Norm weights
  are perturbed from 1 so a norm applied in the wrong place shows up.
  """
  rng = np.random.default_rng(seed)
  tensors = {}
  for name, shape in expected_hf_shapes(config).items():
    if name.endswith("norm.weight") or name == f"{HF_PREFIX}ln_f.weight":
      value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif name == f"{HF_PREFIX}wte.weight":
      value = rng.standard_normal(shape)
    else:  # Linear [out, in]
      value = rng.standard_normal(shape) / np.sqrt(shape[1])
    tensors[name] = value.astype(np.float32)
  return tensors


def write_hf_checkpoint(directory: str | os.PathLike, config: ModelConfig, *,
                        tensors: dict[str, np.ndarray] | None = None, seed: int = 0,
                        dtype: str = "float32", num_shards: int = 1,
                        write_index: bool | None = None,
                        hf_config: dict | None = None) -> dict[str, np.ndarray]:
  """Writes a LLaDA-format HF checkpoint; returns the float32 tensors it holds.

  Args:
    directory: created if needed.
    config: the architecture (written as config.json via `to_hf_config`).
    tensors: tensors to write instead of random ones (to plant missing/extra/bad tensors).
    seed: seed of the random weights.
    dtype: "float32" or "bfloat16" storage.
    num_shards: split the tensors over this many files `model-0000k-of-0000n.safetensors`
      (1 and no index: a single `model.safetensors`).
    write_index: write `model.safetensors.index.json` (default: when `num_shards > 1`).
    hf_config: config.json dict to write instead of `config.to_hf_config()`.
  """
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tensors = random_hf_tensors(config, seed) if tensors is None else tensors
  store_dtype = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
  stored = {name: np.ascontiguousarray(value.astype(store_dtype))
            for name, value in tensors.items()}
  write_index = num_shards > 1 if write_index is None else write_index
  names = list(stored)
  if num_shards == 1 and not write_index:
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
  else:
    weight_map = {}
    for k in range(num_shards):
      file = f"model-{k + 1:05d}-of-{num_shards:05d}.safetensors"
      shard = {name: stored[name] for name in names[k::num_shards]}
      save_file(shard, directory / file, metadata={"format": "pt"})
      weight_map.update(dict.fromkeys(shard, file))
    if write_index:
      total = sum(v.nbytes for v in stored.values())
      with open(directory / INDEX_FILE, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  with open(directory / "config.json", "w") as f:
    json.dump(config.to_hf_config() if hf_config is None else hf_config, f, indent=2)
  return {name: value.astype(np.float32) for name, value in stored.items()}


def write_tokenizer(directory: str | os.PathLike, vocab_size: int, *,
                    chat_template: str | None = None) -> None:
  """Saves a word-level fast tokenizer (`t0`, `t1`, ... plus specials) to `directory`."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  specials = ["<|mask|>", "<|endoftext|>", "<|eot|>", "<|user|>", "<|assistant|>", "<unk>"]
  vocab = {tok: i for i, tok in enumerate(specials)}
  vocab.update({f"t{i}": i for i in range(len(specials), vocab_size)})
  backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  tokenizer = PreTrainedTokenizerFast(
      tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>",
      pad_token="<|endoftext|>", mask_token="<|mask|>")
  if chat_template is not None:
    tokenizer.chat_template = chat_template
  tokenizer.save_pretrained(str(directory))


def hand_built_trajectory(seed: int, valid, positions: int, eligible_rate: float):
  """A recorded policy trajectory with random features and decisions: `valid` `[B, S]` bool
  (the steps taken), `positions` T per step, each eligible with probability
  `eligible_rate` (the first always), each decided unmask with probability 1/2."""
  import jax.numpy as jnp

  from policy_rl.strategy import Trajectory
  rng = np.random.default_rng(seed)
  valid = jnp.asarray(valid, bool)
  b, s = valid.shape
  shape = (b, s, positions)
  return Trajectory(
      token_features=jnp.asarray(rng.random(shape + (1,)), jnp.float32),
      masked=jnp.ones(shape, bool), time=jnp.zeros((b, s)),
      eligible=jnp.asarray(rng.random(shape) < eligible_rate).at[..., 0].set(True),
      actions=jnp.asarray(rng.random(shape) < 0.5), valid=valid)


def window_forwards(model: nnx.Module, tokens: jax.Array, mask: jax.Array, start: int, end: int,
                    changed_at: int, width: int, *, offset: int = 0,
                    fresh_from: int | None = None) -> types.SimpleNamespace:
  """The cached-window check the LLaDA and Dream cache tests share.

  Two candidate windows `[start, end)` per row go through `model.extend`: candidate 0 is the
  canvas's own, candidate 1 changes positions `[changed_at, changed_at + width)`. Both are
  scored, over window positions `[offset, offset + width)`, against the old canvas's cache
  (`got`) and against the changed canvas's cache (`fresh`). Prefill and extend are jitted (one
  compile each instead of eager op-by-op dispatch). Also returns both canvases' full logits
  (`full`, `changed_full`), the old `cache` and the `windows`.
  """
  prefill = jax.jit(lambda canvas: model.prefill(canvas, mask))
  extend = jax.jit(lambda windows, cache: model.extend(
      windows, start, cache, mask, logits_window=(offset, width), fresh_from=fresh_from))
  full, cache = prefill(tokens)
  part = slice(changed_at, changed_at + width)
  changed = tokens.at[:, part].set((tokens[:, part] + 7) % 90)
  windows = jnp.stack([tokens[:, start:end], changed[:, start:end]], axis=1)  # [B, 2, w]
  changed_full, new_cache = prefill(changed)
  return types.SimpleNamespace(full=full, changed_full=changed_full, cache=cache,
                               windows=windows, got=extend(windows, cache),
                               fresh=extend(windows, new_cache))

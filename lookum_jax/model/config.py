"""Model configuration (LLaDA, Dream), read from and written to a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# LLaDA-8B special tokens (public model card / config).
LLADA_MASK_TOKEN_ID = 126336
LLADA_EOS_TOKEN_ID = 126081
LLADA_EOT_TOKEN_ID = 126348

# Dream-7B (Qwen2 tokenizer) special tokens: `<|mask|>`, `<|endoftext|>`, `<|im_end|>`.
DREAM_MASK_TOKEN_ID = 151666
DREAM_EOS_TOKEN_ID = 151643
DREAM_EOT_TOKEN_ID = 151645

ARCHITECTURES = ("llada", "dream")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a LLaDA-style bidirectional transformer.

  Field names follow LLaDA's Hugging Face `config.json` so a config can be read
  with `from_hf_config` and written back with `to_hf_config` without renaming.
  `architecture="dream"` is Dream-7B (Qwen2 layout: q/k/v biases, optionally tied
  embeddings, logits shifted by one position; see `lookum_jax.model.dream`), read
  from and written to Dream's own `config.json` format.
  """

  vocab_size: int = 126464
  d_model: int = 4096
  n_layers: int = 32
  n_heads: int = 32
  n_kv_heads: int = 32
  mlp_hidden_size: int = 12288
  max_sequence_length: int = 4096
  rope_theta: float = 500000.0
  rms_norm_eps: float = 1e-5
  mask_token_id: int = LLADA_MASK_TOKEN_ID
  eos_token_id: int = LLADA_EOS_TOKEN_ID
  eot_token_id: int | None = LLADA_EOT_TOKEN_ID
  pad_token_id: int = LLADA_EOS_TOKEN_ID
  architecture: str = "llada"
  qkv_bias: bool = False
  tie_word_embeddings: bool = False

  def __post_init__(self):
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"ModelConfig.architecture must be one of {ARCHITECTURES}, got "
                       f"{self.architecture!r}.")
    if self.architecture == "llada" and (self.qkv_bias or self.tie_word_embeddings):
      raise ValueError(
          "ModelConfig: LLaDA has no q/k/v biases and no tied embeddings; set "
          "architecture='dream' for a Qwen2-style model with qkv_bias/tie_word_embeddings.")
    positive = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
                "mlp_hidden_size", "max_sequence_length")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}.")
    if self.d_model % self.n_heads:
      raise ValueError(
          f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads "
          f"({self.n_heads}); change one of them.")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(
          f"ModelConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
          f"({self.n_kv_heads}) for grouped-query attention.")
    if self.head_dim % 2:
      raise ValueError(
          f"ModelConfig head_dim = d_model / n_heads = {self.head_dim} must be even for RoPE.")
    if self.rope_theta <= 0:
      raise ValueError(f"ModelConfig.rope_theta must be > 0, got {self.rope_theta}.")
    if self.rms_norm_eps <= 0:
      raise ValueError(f"ModelConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps}.")
    for name in ("mask_token_id", "eos_token_id", "eot_token_id", "pad_token_id"):
      value = getattr(self, name)
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(
            f"ModelConfig.{name} = {value} is outside the vocabulary [0, {self.vocab_size}).")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @property
  def stop_token_ids(self) -> tuple[int, ...]:
    """Token ids that end a response (EOS, and EOT for chat models)."""
    ids = [self.eos_token_id]
    if self.eot_token_id is not None and self.eot_token_id != self.eos_token_id:
      ids.append(self.eot_token_id)
    return tuple(ids)

  def num_params(self) -> int:
    d, f, v = self.d_model, self.mlp_hidden_size, self.vocab_size
    kv = self.n_kv_heads * self.head_dim
    per_layer = 2 * d + d * d + 2 * d * kv + d * d + 3 * d * f
    if self.qkv_bias:
      per_layer += d + 2 * kv
    heads = 1 if self.tie_word_embeddings else 2
    return self.n_layers * per_layer + heads * v * d + d

  def replace(self, **changes: Any) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_hf_config(cls, hf: dict[str, Any]) -> ModelConfig:
    """Builds a config from a LLaDA or Dream `config.json` dict, rejecting unsupported
    settings."""
    if is_dream_hf_config(hf):
      return cls._from_dream_hf_config(hf)
    unsupported = {
        "include_bias": False, "weight_tying": False, "attention_layer_norm": False,
        "input_emb_norm": False, "scale_logits": False, "clip_qkv": None,
        "include_qkv_bias": False, "rope": True, "alibi": False, "layer_norm_type": "rms",
    }
    for key, ok_value in unsupported.items():
      if key in hf and hf[key] != ok_value:
        raise ValueError(
            f"config.json sets {key}={hf[key]!r}; LLaDA checkpoints use {ok_value!r} and this "
            "port supports only that.")
    if hf.get("block_type", "llama") != "llama":
      raise ValueError(f"config.json block_type={hf['block_type']!r}; only 'llama' is supported.")
    if hf.get("activation_type", "silu") not in ("silu", "swiglu"):
      raise ValueError(
          f"config.json activation_type={hf['activation_type']!r}; only silu (SwiGLU) "
          "is supported.")
    required = ("d_model", "n_layers", "n_heads")
    missing = [k for k in required if k not in hf]
    if missing:
      raise ValueError(f"config.json lacks required LLaDA fields {missing}.")
    n_heads = hf["n_heads"]
    n_kv_heads = hf.get("n_kv_heads") or n_heads
    mlp_hidden = hf.get("mlp_hidden_size")
    if mlp_hidden is None:
      mlp_hidden = int(hf.get("mlp_ratio", 4) * hf["d_model"])
    vocab = hf.get("embedding_size") or hf.get("vocab_size")
    if vocab is None:
      raise ValueError("config.json lacks vocab_size/embedding_size.")
    defaults = cls()
    eos = hf.get("eos_token_id", defaults.eos_token_id)
    eot = hf.get("eot_token_id", defaults.eot_token_id if vocab > LLADA_EOT_TOKEN_ID else None)
    return cls(
        vocab_size=int(vocab),
        d_model=int(hf["d_model"]),
        n_layers=int(hf["n_layers"]),
        n_heads=int(n_heads),
        n_kv_heads=int(n_kv_heads),
        mlp_hidden_size=int(mlp_hidden),
        max_sequence_length=int(hf.get("max_sequence_length", defaults.max_sequence_length)),
        rope_theta=float(hf.get("rope_theta", defaults.rope_theta)),
        rms_norm_eps=float(hf.get("rms_norm_eps", defaults.rms_norm_eps)),
        mask_token_id=int(hf.get("mask_token_id", defaults.mask_token_id)),
        eos_token_id=int(eos),
        eot_token_id=None if eot is None else int(eot),
        pad_token_id=int(eos if hf.get("pad_token_id") is None else hf["pad_token_id"]),
    )

  @classmethod
  def _from_dream_hf_config(cls, hf: dict[str, Any]) -> ModelConfig:
    """Dream's `config.json` (Qwen2 field names)."""
    if hf.get("rope_scaling") not in (None, {}):
      raise ValueError(f"config.json sets rope_scaling={hf['rope_scaling']!r}; this Dream port "
                       "supports only plain RoPE (rope_scaling null).")
    if hf.get("use_sliding_window", False):
      raise ValueError("config.json sets use_sliding_window=true; Dream attends over the "
                       "whole sequence and this port supports only that.")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"config.json hidden_act={hf['hidden_act']!r}; only silu (SwiGLU) is "
                       "supported.")
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "vocab_size")
    missing = [k for k in required if k not in hf]
    if missing:
      raise ValueError(f"config.json lacks required Dream (Qwen2) fields {missing}.")
    d_model, n_heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    if hf.get("head_dim") not in (None, d_model // max(n_heads, 1)):
      raise ValueError(f"config.json head_dim={hf['head_dim']} differs from hidden_size / "
                       f"num_attention_heads = {d_model // n_heads}; not supported.")
    vocab = int(hf["vocab_size"])
    eos = _first_id(hf.get("eos_token_id"), DREAM_EOS_TOKEN_ID)
    default_eot = DREAM_EOT_TOKEN_ID if vocab > DREAM_EOT_TOKEN_ID else None
    eot = hf.get("eot_token_id", default_eot)
    return cls(
        vocab_size=vocab, d_model=d_model, n_layers=int(hf["num_hidden_layers"]),
        n_heads=n_heads, n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
        mlp_hidden_size=int(hf["intermediate_size"]),
        max_sequence_length=int(hf.get("max_position_embeddings", 131072)),
        rope_theta=float(hf.get("rope_theta", 1e6)),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        mask_token_id=int(hf.get("mask_token_id", DREAM_MASK_TOKEN_ID)),
        eos_token_id=eos, eot_token_id=None if eot is None else int(eot),
        pad_token_id=_first_id(hf.get("pad_token_id"), eos),
        architecture="dream", qkv_bias=True,
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)))

  def to_hf_config(self) -> dict[str, Any]:
    """The `config.json` dict for this architecture (LLaDA's format, or Dream's)."""
    if self.architecture == "dream":
      return self._to_dream_hf_config()
    return {
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "d_model": self.d_model,
        "n_layers": self.n_layers,
        "n_heads": self.n_heads,
        "n_kv_heads": self.n_kv_heads,
        "mlp_hidden_size": self.mlp_hidden_size,
        "vocab_size": self.vocab_size,
        "embedding_size": self.vocab_size,
        "max_sequence_length": self.max_sequence_length,
        "rope_theta": self.rope_theta,
        "rms_norm_eps": self.rms_norm_eps,
        "mask_token_id": self.mask_token_id,
        "eos_token_id": self.eos_token_id,
        "eot_token_id": self.eot_token_id,
        "pad_token_id": self.pad_token_id,
        "include_bias": False,
        "weight_tying": False,
        "block_type": "llama",
        "activation_type": "silu",
        "layer_norm_type": "rms",
        "rope": True,
        "alibi": False,
    }

  def _to_dream_hf_config(self) -> dict[str, Any]:
    if not self.qkv_bias:
      raise ValueError("Dream's config.json format implies q/k/v biases; set qkv_bias=True.")
    return {
        "architectures": ["DreamModel"],
        "model_type": "Dream",
        "hidden_size": self.d_model,
        "num_hidden_layers": self.n_layers,
        "num_attention_heads": self.n_heads,
        "num_key_value_heads": self.n_kv_heads,
        "intermediate_size": self.mlp_hidden_size,
        "vocab_size": self.vocab_size,
        "max_position_embeddings": self.max_sequence_length,
        "rope_theta": self.rope_theta,
        "rope_scaling": None,
        "rms_norm_eps": self.rms_norm_eps,
        "hidden_act": "silu",
        "tie_word_embeddings": self.tie_word_embeddings,
        "use_sliding_window": False,
        "mask_token_id": self.mask_token_id,
        "eos_token_id": self.eos_token_id,
        "bos_token_id": self.eos_token_id,
        "eot_token_id": self.eot_token_id,  # not in Dream's file; read back if present
        "pad_token_id": self.pad_token_id,
    }

  @classmethod
  def from_json_file(cls, path: str | os.PathLike) -> ModelConfig:
    with open(path) as f:
      try:
        hf = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return cls.from_hf_config(hf)


def llada_8b() -> ModelConfig:
  """LLaDA-8B (Base/Instruct, and LLaDA 1.5) shape."""
  return ModelConfig()


def dream_7b() -> ModelConfig:
  """Dream-v0 (Base/Instruct) 7B shape, from its public `config.json` (Qwen2.5-7B layout)."""
  return ModelConfig(
      vocab_size=152064, d_model=3584, n_layers=28, n_heads=28, n_kv_heads=4,
      mlp_hidden_size=18944, max_sequence_length=131072, rope_theta=1e6, rms_norm_eps=1e-6,
      mask_token_id=DREAM_MASK_TOKEN_ID, eos_token_id=DREAM_EOS_TOKEN_ID,
      eot_token_id=DREAM_EOT_TOKEN_ID, pad_token_id=DREAM_EOS_TOKEN_ID,
      architecture="dream", qkv_bias=True, tie_word_embeddings=False)


def is_dream_hf_config(hf: dict[str, Any]) -> bool:
  """Whether a `config.json` dict describes a Dream model (model_type or architectures)."""
  return (str(hf.get("model_type", "")).lower() == "dream"
          or "DreamModel" in (hf.get("architectures") or ()))


def _first_id(value: Any, default: int) -> int:
  """A token id from a config field that may be missing, an int or a list of ints."""
  if value is None:
    return int(default)
  if isinstance(value, (list, tuple)):
    if not value:
      return int(default)
    value = value[0]
  return int(value)


def tiny(vocab_size: int = 128, **changes: Any) -> ModelConfig:
  """A tiny random-init config for unit tests (GQA on, so both head paths are exercised)."""
  base = dict(
      vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
      mlp_hidden_size=128, max_sequence_length=256, rope_theta=10000.0,
      mask_token_id=vocab_size - 1, eos_token_id=vocab_size - 2, eot_token_id=vocab_size - 3,
      pad_token_id=vocab_size - 2)
  base.update(changes)
  return ModelConfig(**base)


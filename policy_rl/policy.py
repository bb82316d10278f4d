"""The unmasking policy: a one-block DiT-style transformer over the whole sequence.

Per position, the token features (the dLLM's confidence, ...) are projected to the width; the
mask flag (an embedding) plus the time (a sinusoidal embedding and an MLP) condition the block
through adaptive layer norm: shift/scale before and a gate after both the attention and the MLP,
all produced by a zero-initialised linear map, so the block starts as the identity. Attention
is bidirectional with RoPE. A final LayerNorm and Linear(width, 1) give one logit per position;
its kernel starts at zero and its bias at -2, so every position starts with unmask probability
sigmoid(-2) ~ 0.12. At the defaults (width 128, 2 heads, MLP 512) the policy has ~330K params.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lookum_jax.checkfiles import check_policy_dir
from lookum_jax.model.llada import apply_rope, rope_angles
from policy_rl.features import DEFAULT_FEATURES, PolicyInput, validate_features

_NEG_INF = jnp.finfo(jnp.float32).min
CONFIG_FILE = "policy_config.json"
PARAMS_DIR = "params"


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Architecture of the unmasking policy.

  Attributes:
    features: per-position input features (`policy_rl.features.TOKEN_FEATURES`).
    width: model width.
    num_heads: attention heads (`width / num_heads` must be even for RoPE).
    mlp_dim: hidden size of the block's MLP (GELU).
    num_layers: conditioned blocks (the paper uses one).
    time_frequencies: size of the sinusoidal time embedding (even).
    time_scale: the time t in [0, 1] is multiplied by this before the sinusoid (DiT's
      timesteps run to 1000).
    rope_theta: RoPE base.
    output_bias: initial bias of the output logit (-2: unmask probability ~0.12).
    layer_norm_eps: epsilon of every LayerNorm.
  """

  features: tuple[str, ...] = DEFAULT_FEATURES
  width: int = 128
  num_heads: int = 2
  mlp_dim: int = 512
  num_layers: int = 1
  time_frequencies: int = 128
  time_scale: float = 1000.0
  rope_theta: float = 10000.0
  output_bias: float = -2.0
  layer_norm_eps: float = 1e-6

  def __post_init__(self):
    object.__setattr__(self, "features",
                       validate_features(self.features, "PolicyConfig.features"))
    for name in ("width", "num_heads", "mlp_dim", "num_layers", "time_frequencies"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"PolicyConfig.{name} must be a positive int, got {value!r}.")
    if self.width % self.num_heads or (self.width // self.num_heads) % 2:
      raise ValueError(
          f"PolicyConfig.width ({self.width}) / num_heads ({self.num_heads}) must be an even "
          "integer (the head size RoPE rotates).")
    if self.time_frequencies % 2:
      raise ValueError(
          f"PolicyConfig.time_frequencies must be even, got {self.time_frequencies}.")
    for name in ("time_scale", "rope_theta", "layer_norm_eps"):
      if not getattr(self, name) > 0:
        raise ValueError(f"PolicyConfig.{name} must be > 0, got {getattr(self, name)!r}.")
    if not math.isfinite(self.output_bias):
      raise ValueError(f"PolicyConfig.output_bias must be finite, got {self.output_bias!r}.")

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads

  def to_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "features": list(self.features)}

  def replace(self, **changes: Any) -> PolicyConfig:
    return dataclasses.replace(self, **changes)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding `[..., dim]` of (scaled) times `[...]`: [cos, sin] of t * freqs."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  return x * (1.0 + scale) + shift


class ConditionedBlock(nnx.Module):
  """DiT block with adaLN-Zero: attention and MLP, each modulated and gated by the condition."""

  def __init__(self, config: PolicyConfig, *, rngs: nnx.Rngs):
    w, eps = config.width, config.layer_norm_eps
    self.num_heads, self.head_dim = config.num_heads, config.head_dim
    self.attn_norm = nnx.LayerNorm(w, epsilon=eps, use_scale=False, use_bias=False, rngs=rngs)
    self.qkv = nnx.Linear(w, 3 * w, rngs=rngs)
    self.attn_out = nnx.Linear(w, w, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(w, epsilon=eps, use_scale=False, use_bias=False, rngs=rngs)
    self.mlp_in = nnx.Linear(w, config.mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(config.mlp_dim, w, rngs=rngs)
    self.modulation = nnx.Linear(w, 6 * w, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def attention(self, x: jax.Array, cos: jax.Array, sin: jax.Array,
                key_mask: jax.Array | None) -> jax.Array:
    b, t, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.num_heads, self.head_dim), 3, axis=2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    logits = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(jnp.float32(self.head_dim))
    if key_mask is not None:
      logits = jnp.where(key_mask[:, None, None, :], logits, _NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bnts,bsnh->btnh", probs, v)  # 'BNTS,BSNH->BTNH'
    return self.attn_out(out.reshape(b, t, self.num_heads * self.head_dim))

  def __call__(self, x: jax.Array, condition: jax.Array, cos: jax.Array, sin: jax.Array,
               key_mask: jax.Array | None) -> jax.Array:
    """`x [B, T, W]`, `condition [B, T, W]` -> `[B, T, W]`."""
    (shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp) = jnp.split(
        self.modulation(jax.nn.silu(condition)), 6, axis=-1)
    h = modulate(self.attn_norm(x), shift_attn, scale_attn)
    x = x + gate_attn * self.attention(h, cos, sin, key_mask)
    h = modulate(self.mlp_norm(x), shift_mlp, scale_mlp)
    return x + gate_mlp * self.mlp_out(jax.nn.gelu(self.mlp_in(h), approximate=False))


class UnmaskingPolicy(nnx.Module):
  """`policy(inputs, attention_mask) -> logits [B, T]` of the Bernoulli unmask decisions."""

  def __init__(self, config: PolicyConfig, *, rngs: nnx.Rngs):
    self.config = config
    w = config.width
    self.feature_proj = nnx.Linear(len(config.features), w, rngs=rngs)
    self.mask_embed = nnx.Embed(2, w, rngs=rngs)
    self.time_in = nnx.Linear(config.time_frequencies, w, rngs=rngs)
    self.time_out = nnx.Linear(w, w, rngs=rngs)
    self.blocks = nnx.List([ConditionedBlock(config, rngs=rngs)
                            for _ in range(config.num_layers)])
    self.final_norm = nnx.LayerNorm(w, epsilon=config.layer_norm_eps, rngs=rngs)
    self.head = nnx.Linear(w, 1, kernel_init=nnx.initializers.zeros,
                           bias_init=nnx.initializers.constant(config.output_bias), rngs=rngs)

  def __call__(self, inputs: PolicyInput, attention_mask: jax.Array | None = None) -> jax.Array:
    """Unmask logits `[B, T]` (float32).

    Args:
      inputs: token features `[B, T, F]`, mask flags `[B, T]`, times `[B]`.
      attention_mask: optional `[B, T]`, false on prompt padding: padding is no attention key
        and does not advance RoPE positions (as in the dLLM).
    """
    features = inputs.token_features.astype(jnp.float32)
    if features.ndim != 3 or features.shape[-1] != len(self.config.features):
      raise ValueError(
          f"token_features must be [batch, length, {len(self.config.features)}] for the "
          f"feature set {self.config.features}, got shape {features.shape}.")
    b, t, _ = features.shape
    x = self.feature_proj(features)
    time = timestep_embedding(inputs.time * self.config.time_scale, self.config.time_frequencies)
    time = self.time_out(jax.nn.silu(self.time_in(time)))  # [B, W]
    condition = self.mask_embed(inputs.masked.astype(jnp.int32)) + time[:, None, :]
    if attention_mask is None:
      key_mask = None
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    else:
      key_mask = attention_mask.astype(bool)
      positions = jnp.maximum(jnp.cumsum(key_mask.astype(jnp.int32), axis=1) - 1, 0)
    cos, sin = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
    for block in self.blocks:
      x = block(x, condition, cos, sin, key_mask)
    return self.head(self.final_norm(x))[..., 0]


@functools.partial(nnx.jit, static_argnums=0)
def _init_policy(config: PolicyConfig, seed: jax.Array) -> UnmaskingPolicy:
  return UnmaskingPolicy(config, rngs=nnx.Rngs(seed))


def init_policy(config: PolicyConfig | None = None, seed: int = 0) -> UnmaskingPolicy:
  """A freshly initialised policy (default architecture when `config` is None), built in one
  compiled program rather than op by op."""
  return _init_policy(PolicyConfig() if config is None else config, jax.random.key(seed))


def num_params(policy: UnmaskingPolicy) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(policy, nnx.Param)))


def save_policy(policy: UnmaskingPolicy, directory: str | os.PathLike) -> Path:
  """Writes `policy_config.json` and the orbax params into `directory` (replacing them)."""
  import orbax.checkpoint as ocp

  directory = Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(directory / PARAMS_DIR, nnx.state(policy, nnx.Param), force=True)
  (directory / CONFIG_FILE).write_text(json.dumps(policy.config.to_dict(), indent=2) + "\n")
  return directory


def load_policy(directory: str | os.PathLike) -> UnmaskingPolicy:
  """Loads a policy written by `save_policy`."""
  import orbax.checkpoint as ocp

  directory = Path(directory).absolute()
  config_path = directory / CONFIG_FILE
  if not config_path.is_file() or not (directory / PARAMS_DIR).is_dir():
    raise ValueError(
        f"{directory} is not a saved policy (expected {CONFIG_FILE} and {PARAMS_DIR}/, as "
        "written by policy_rl.save_policy).")
  check_policy_dir(directory)  # one line naming a truncated or corrupt file, not orbax's
  config = PolicyConfig(**json.loads(config_path.read_text()))
  policy = nnx.eval_shape(lambda: UnmaskingPolicy(config, rngs=nnx.Rngs(0)))
  abstract = nnx.state(policy, nnx.Param)
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(directory / PARAMS_DIR, abstract)
  nnx.update(policy, params)
  return policy

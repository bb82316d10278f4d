"""Configuration of a toy MDM training run, loaded from a `configs/*.py` file and overridable
from the command line (`--override batch_size=32 --override task_options.size=4`)."""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any

from lookum_jax import configfile
from lookum_jax.model.config import ModelConfig
from lookum_jax.tasks import get_task, model_token_config
from lookum_jax.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Task, model size and optimisation of one run. Everything a run depends on is here, so a
  checkpoint directory records its config and refuses to resume under a different one."""

  # Task and data. Batches are a deterministic function of (seed, step).
  task: str = "sudoku"
  task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  gen_length: int | None = None  # None: the task's default
  # Model (LLaDA architecture; vocabulary and special ids come from the tokenizer).
  d_model: int = 128
  n_layers: int = 4
  n_heads: int = 4
  n_kv_heads: int = 4
  mlp_hidden_size: int = 384
  rope_theta: float = 10000.0
  max_sequence_length: int = 256
  # Optimisation: AdamW, linear warm-up then cosine decay to min_lr_ratio * learning_rate.
  batch_size: int = 64
  num_steps: int = 5000
  learning_rate: float = 1e-3
  warmup_steps: int = 200
  min_lr_ratio: float = 0.1
  weight_decay: float = 0.1
  adam_b1: float = 0.9
  adam_b2: float = 0.99
  max_grad_norm: float = 1.0
  noise_eps: float = 1e-3  # mask ratio t ~ U(noise_eps, 1)
  seed: int = 0
  # Warm start (a curriculum): an exported model directory (`<run>/model`, or
  # `--export-step`'s `model-stepN`) whose weights replace the seed's initial params. The
  # architecture must match; max_sequence_length may differ (RoPE has no length-bound
  # params). The optimizer starts fresh.
  init_from: str | None = None
  # Bookkeeping.
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  log_every: int = 10

  def __post_init__(self):
    if not isinstance(self.task_options, Mapping):
      raise ValueError(
          f"TrainConfig.task_options must be a mapping, got {type(self.task_options).__name__}.")
    # Read-only view so the frozen config cannot change under a running job.
    object.__setattr__(self, "task_options", types.MappingProxyType(dict(self.task_options)))
    positive = ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size",
                "max_sequence_length", "batch_size", "num_steps", "checkpoint_every",
                "keep_checkpoints", "log_every")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}.")
    if self.gen_length is not None and (not isinstance(self.gen_length, int)
                                        or self.gen_length <= 0):
      raise ValueError(f"TrainConfig.gen_length must be None or a positive int, "
                       f"got {self.gen_length!r}.")
    if not isinstance(self.warmup_steps, int) or not 0 <= self.warmup_steps < self.num_steps:
      raise ValueError(f"TrainConfig.warmup_steps must be an int in [0, num_steps="
                       f"{self.num_steps}), got {self.warmup_steps!r}.")
    if not self.learning_rate > 0:
      raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}.")
    if not 0 <= self.min_lr_ratio <= 1:
      raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}.")
    if self.weight_decay < 0:
      raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
    for name in ("adam_b1", "adam_b2"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)!r}.")
    if not self.max_grad_norm > 0:
      raise ValueError(f"TrainConfig.max_grad_norm must be > 0, got {self.max_grad_norm!r}.")
    if not 0 < self.noise_eps < 1:
      raise ValueError(f"TrainConfig.noise_eps must be in (0, 1), got {self.noise_eps!r}.")
    if not isinstance(self.seed, int) or self.seed < 0:
      raise ValueError(f"TrainConfig.seed must be a non-negative int, got {self.seed!r}.")
    if self.init_from is not None:
      if not isinstance(self.init_from, str) or not self.init_from:
        raise ValueError(f"TrainConfig.init_from must be None or a model directory path, "
                         f"got {self.init_from!r}.")
    # Builds the task (validating task/task_options) and the model config (validating sizes).
    length = self.make_task().prompt_length + self.resolved_gen_length
    if length > self.max_sequence_length:
      raise ValueError(
          f"TrainConfig.max_sequence_length={self.max_sequence_length} is shorter than prompt "
          f"+ response = {length} tokens for task {self.task!r}.")
    self.model_config()

  def make_task(self) -> Task:
    return get_task(self.task, **self.task_options)

  @property
  def resolved_gen_length(self) -> int:
    return self.make_task().gen_length if self.gen_length is None else self.gen_length

  def model_config(self) -> ModelConfig:
    from lookum_jax.tasks.tokenizer import build_tokenizer
    return ModelConfig(
        d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
        n_kv_heads=self.n_kv_heads, mlp_hidden_size=self.mlp_hidden_size,
        max_sequence_length=self.max_sequence_length, rope_theta=self.rope_theta,
        **model_token_config(build_tokenizer()))

  def to_dict(self) -> dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["task_options"] = dict(self.task_options)
    return out

  def replace(self, **changes: Any) -> TrainConfig:
    return dataclasses.replace(self, **changes)


def load_config(path: str | os.PathLike) -> TrainConfig:
  """Runs `get_config()` from a Python config file."""
  return configfile.load_config(path, TrainConfig)


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
  """Applies `key=value` overrides; `task_options.KEY=value` sets one task option.

  Values are Python literals (`3`, `1e-3`, `None`, `{'size': 4}`) or bare strings.
  """
  return configfile.apply_overrides(config, overrides, mappings=("task_options",))

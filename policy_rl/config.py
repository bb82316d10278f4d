"""Configuration of a policy training run: a `configs/policy_*.py` file returning a
`PolicyTrainConfig`, overridable from the command line (`--override grpo.alpha=3`)."""

from __future__ import annotations

import dataclasses
import json
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any

from lookum_jax import configfile
from lookum_jax.sampling.config import CACHE_MODES
from policy_rl.grpo import GRPOConfig
from policy_rl.policy import PolicyConfig

BANDIT = "bandit"


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW after global-norm clipping; linear warm-up then cosine decay (in train steps)."""

  learning_rate: float = 3e-5
  warmup_steps: int = 100
  min_lr_ratio: float = 0.0
  weight_decay: float = 0.1
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  max_grad_norm: float = 0.2

  def __post_init__(self):
    if not self.learning_rate > 0:
      raise ValueError(f"OptimConfig.learning_rate must be > 0, got {self.learning_rate!r}.")
    if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
      raise ValueError(
          f"OptimConfig.warmup_steps must be a non-negative int, got {self.warmup_steps!r}.")
    if not 0 <= self.min_lr_ratio <= 1:
      raise ValueError(f"OptimConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}.")
    if self.weight_decay < 0:
      raise ValueError(f"OptimConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
    for name in ("adam_b1", "adam_b2"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"OptimConfig.{name} must be in [0, 1), got {getattr(self, name)!r}.")
    if not self.max_grad_norm > 0:
      raise ValueError(f"OptimConfig.max_grad_norm must be > 0, got {self.max_grad_norm!r}.")


@dataclasses.dataclass(frozen=True)
class PolicyTrainConfig:
  """Everything a policy training run depends on (a run directory records it and refuses to
  resume under a different one).

  Attributes:
    model: the frozen dLLM: a checkpoint directory or embedded model name
      (`lookum_jax.load_model`), or "random" for a random tiny LLaDA built from
      `model_options` (`lookum_jax.model.tiny` fields), for tests.
    model_options: `tiny()` fields of the "random" model.
    model_seed: seed of the "random" model.
    task: "bandit" (random prompts; correctness from `task_options["correct"]`: "always", or
      "reference" = equal to the dLLM's own one-token-per-step greedy decode), or a
      `lookum_jax.tasks` name scored by the task's checker.
    task_options: the task's options (bandit: `prompt_length`, `correct`).
    gen_length: response length L (None: the task's; the bandit's default is 16).
    block_length: semi-autoregressive block (None: full diffusion, one block of L).
    cache: the rollouts' KV cache (`SamplerConfig.cache`): "none", "prefix" (the prompt's keys
      and values computed once per block; in full diffusion each step forwards the L
      response positions only) or "dual" (semi-AR: each step forwards the current block).
      The policy's window is the block under a cache (the whole response in full diffusion),
      so a policy trained with a cache in semi-AR decoding should be evaluated with one.
    prompts_per_step: prompts per batch; the batch decodes prompts_per_step * group_size rows.
    policy_temperature: the policy's Bernoulli temperature during training.
    policy, grpo, optim: the policy architecture, the GRPO objective and the optimizer.
    num_steps: train steps (one batch of rollouts and `grpo.updates_per_batch` updates each).
    seed: seeds the policy init, the prompts and the rollouts.
    checkpoint_every, keep_checkpoints, log_every: bookkeeping (in train steps).
    checkpoint_interval_s: also checkpoint after a step that ends this many seconds of wall
      time after the last checkpoint (0: only every `checkpoint_every` steps); where a run
      checkpoints changes nothing in its result (a resumed run is bit-identical).
  """

  model: str = "random"
  model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  model_seed: int = 0
  task: str = BANDIT
  task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  gen_length: int | None = None
  block_length: int | None = None
  cache: str = "none"
  prompts_per_step: int = 8
  policy_temperature: float = 1.0
  policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
  grpo: GRPOConfig = dataclasses.field(default_factory=GRPOConfig)
  optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
  num_steps: int = 1000
  seed: int = 0
  checkpoint_every: int = 50
  keep_checkpoints: int = 2
  log_every: int = 1
  checkpoint_interval_s: float = 0.0

  def __post_init__(self):
    for name in ("model_options", "task_options"):
      value = getattr(self, name)
      if not isinstance(value, Mapping):
        raise ValueError(
            f"PolicyTrainConfig.{name} must be a mapping, got {type(value).__name__}.")
      object.__setattr__(self, name, types.MappingProxyType(dict(value)))
    for name, cls in (("policy", PolicyConfig), ("grpo", GRPOConfig), ("optim", OptimConfig)):
      if not isinstance(getattr(self, name), cls):
        raise ValueError(f"PolicyTrainConfig.{name} must be a {cls.__name__}, got "
                         f"{type(getattr(self, name)).__name__}.")
    for name in ("prompts_per_step", "num_steps", "checkpoint_every", "keep_checkpoints",
                 "log_every"):
      _check_positive_int(name, getattr(self, name))
    for name in ("gen_length", "block_length"):
      if getattr(self, name) is not None:
        _check_positive_int(name, getattr(self, name))
    for name in ("seed", "model_seed"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"PolicyTrainConfig.{name} must be a non-negative int, got {value!r}.")
    if self.cache not in CACHE_MODES:
      raise ValueError(
          f"PolicyTrainConfig.cache must be one of {tuple(CACHE_MODES)}, got {self.cache!r}.")
    if (isinstance(self.checkpoint_interval_s, bool)
        or not isinstance(self.checkpoint_interval_s, (int, float))
        or not self.checkpoint_interval_s >= 0):
      raise ValueError(f"PolicyTrainConfig.checkpoint_interval_s must be a number of seconds "
                       f">= 0 (0: off), got {self.checkpoint_interval_s!r}.")
    if not self.policy_temperature > 0:
      raise ValueError(
          f"PolicyTrainConfig.policy_temperature must be > 0, got {self.policy_temperature!r}.")
    if not isinstance(self.model, str) or not self.model:
      raise ValueError(f"PolicyTrainConfig.model must be a non-empty string, got {self.model!r}.")
    if self.optim.warmup_steps >= self.num_steps:
      raise ValueError(
          f"OptimConfig.warmup_steps ({self.optim.warmup_steps}) must be smaller than "
          f"PolicyTrainConfig.num_steps ({self.num_steps}); lower it with "
          "--override optim.warmup_steps=N.")
    if self.block_length is not None and self.gen_length is not None and (
        self.gen_length % self.block_length):
      raise ValueError(
          f"PolicyTrainConfig.gen_length ({self.gen_length}) must be a multiple of "
          f"block_length ({self.block_length}).")

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict (nested configs as dicts, tuples as lists)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out.update(model_options=dict(self.model_options), task_options=dict(self.task_options),
               policy=self.policy.to_dict(), grpo=dataclasses.asdict(self.grpo),
               optim=dataclasses.asdict(self.optim))
    return json.loads(json.dumps(out))

  def replace(self, **changes: Any) -> PolicyTrainConfig:
    return dataclasses.replace(self, **changes)


def _check_positive_int(name: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"PolicyTrainConfig.{name} must be a positive int, got {value!r}.")


def load_config(path: str | os.PathLike) -> PolicyTrainConfig:
  """Runs `get_config()` from a Python config file."""
  return configfile.load_config(path, PolicyTrainConfig)


_MAPPINGS = ("model_options", "task_options")


def apply_overrides(config: PolicyTrainConfig, overrides: Sequence[str]) -> PolicyTrainConfig:
  """Applies `key=value` overrides: `num_steps=10`, `grpo.alpha=3`, `policy.width=64`,
  `task_options.max_digits=3`. Values are Python literals or bare strings."""
  return configfile.apply_overrides(config, overrides, mappings=_MAPPINGS)

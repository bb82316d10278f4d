"""`BenchmarkConfig`: one benchmark run (model, data, sampler, batching), a frozen dataclass
returned by `get_config()` in a `configs/*.py` file and overridable from the command line
(`--override steps=128`, `--override params.paths=3`, `--override benchmark_options.timeout_s=5`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from lookum_jax import configfile
from lookum_jax.benchmarks.base import Benchmark, get_benchmark
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.strategies import strategy_class

# Placeholders the user must override; a run refuses to start while one is left.
MODEL_PATH_PLACEHOLDER = "<set model_path: --override model_path=/path/to/converted-model>"
DATA_PATH_PLACEHOLDER = "<set data_path: --override data_path=/path/to/test.jsonl>"
POLICY_PATH_PLACEHOLDER = "<set policy_path: --policy /path/to/policy-dir>"
DTYPES = ("auto", "bfloat16", "float32")
_MAPPINGS = ("params", "benchmark_options")
# Fields that change no output token: left out of the fingerprint that guards resuming.
_NOT_FINGERPRINTED = ("batch_size", "prompt_buckets", "mesh_model", "score_workers",
                      "data_path", "model_name", "sampler_name")


def is_placeholder(value: str | None) -> bool:
  return isinstance(value, str) and value.startswith("<set ")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """One benchmark run.

  Attributes:
    model_path: a converted checkpoint or Hugging Face directory (LLaDA or Dream).
    benchmark: gsm8k, math500, humaneval, mbpp, countdown or sudoku.
    data_path: the benchmark's local JSONL file (see each benchmark's `data_help`).
    tokenizer_path: where the tokenizer is (default: model_path).
    model_name, sampler_name: labels for result files and tables.
    gen_length, block_length, steps, strategy, params, temperature, cfg_scale,
      logits_eos_inf, confidence_eos_eot_inf: the `SamplerConfig`.
    policy_path: a trained policy directory (strategies "policy" and "policy_lookum").
    benchmark_options: the benchmark's options (prompt_style, timeout_s, memory_mb, ...).
    chat_template: wrap prompts in the tokenizer's chat template (Instruct models).
    batch_size: rows per generate call (a multiple of the mesh's data axis).
    prompt_buckets: prompt lengths batches are left-padded to (one compile per bucket);
      longer prompts round up to a multiple of the largest bucket.
    dtype: compute dtype: "auto" is bfloat16 on GPU/TPU, float32 on CPU.
    mesh_model: tensor-parallel size (the `model` mesh axis); the remaining devices split
      the batch (`data` axis).
    seed: base PRNG seed; each problem draws from `fold_in(seed, hash(problem id))`.
    score_workers: problems scored concurrently (code benchmarks run programs).
  """

  model_path: str = MODEL_PATH_PLACEHOLDER
  benchmark: str = "gsm8k"
  data_path: str = DATA_PATH_PLACEHOLDER
  tokenizer_path: str | None = None
  model_name: str = "model"
  sampler_name: str = "lowconf"
  gen_length: int = 256
  block_length: int = 32
  steps: int = 256
  strategy: str = "low_confidence"
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  temperature: float = 0.0
  cfg_scale: float = 0.0
  logits_eos_inf: bool = False
  confidence_eos_eot_inf: bool = False
  cache: str = "none"
  policy_path: str | None = None
  benchmark_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  chat_template: bool = True
  batch_size: int = 8
  prompt_buckets: tuple[int, ...] = (256, 512, 1024)
  dtype: str = "auto"
  mesh_model: int = 1
  seed: int = 0
  score_workers: int = 8

  def __post_init__(self):
    self.make_benchmark()  # unknown benchmark or option -> ValueError naming the fix
    self.sampler_config()  # invalid sampler settings -> ValueError naming the field
    for name in ("batch_size", "mesh_model", "score_workers"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"BenchmarkConfig.{name} must be a positive int, got {value!r}.")
    buckets = self.prompt_buckets
    if (not buckets or not all(isinstance(b, int) and b > 0 for b in buckets)
        or list(buckets) != sorted(set(buckets))):
      raise ValueError("BenchmarkConfig.prompt_buckets must be increasing positive ints, got "
                       f"{buckets!r}.")
    if self.dtype not in DTYPES:
      raise ValueError(f"BenchmarkConfig.dtype must be one of {DTYPES}, got {self.dtype!r}.")
    if self.needs_policy and not self.policy_path:
      raise ValueError(f"strategy {self.strategy!r} needs policy_path (--policy DIR or "
                       "--override policy_path=DIR).")

  def make_benchmark(self) -> Benchmark:
    return get_benchmark(self.benchmark, **self.benchmark_options)

  @property
  def needs_policy(self) -> bool:
    """The strategy reads a learned policy (`policy_path`)."""
    return strategy_class(self.strategy).needs_policy

  def sampler_config(self) -> SamplerConfig:
    return SamplerConfig(
        gen_length=self.gen_length, block_length=self.block_length, steps=self.steps,
        temperature=self.temperature, cfg_scale=self.cfg_scale, strategy=self.strategy,
        params=dict(self.params), cache=self.cache, logits_eos_inf=self.logits_eos_inf,
        confidence_eos_eot_inf=self.confidence_eos_eot_inf)

  @property
  def run_name(self) -> str:
    return f"{self.model_name}_{self.benchmark}_{self.sampler_name}"

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["prompt_buckets"] = list(self.prompt_buckets)
    return out

  def fingerprint(self) -> str:
    """A short hash of every setting that can change an output: a results file holds the
    records of one fingerprint, so a resumed run never mixes configurations."""
    settings = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
    settings["params"] = self.sampler_config().strategy.to_dict()
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

  def replace(self, **changes: Any) -> BenchmarkConfig:
    return dataclasses.replace(self, **changes)


def load_config(path: str | os.PathLike) -> BenchmarkConfig:
  """Runs `get_config()` from a Python config file (presets: configs/<model>_<bench>_*.py)."""
  return configfile.load_config(path, BenchmarkConfig)


def apply_overrides(config: BenchmarkConfig, overrides: Sequence[str]) -> BenchmarkConfig:
  """Applies `key=value` overrides; `params.KEY=v` / `benchmark_options.KEY=v` set one entry.

  Values are Python literals (`128`, `0.9`, `None`, `(256, 512)`) or bare strings.
  """
  return configfile.apply_overrides(config, overrides, mappings=_MAPPINGS)

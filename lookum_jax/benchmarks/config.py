"""`BenchmarkConfig`: one benchmark run (model, data, sampler, batching), a frozen dataclass
returned by `get_config()` in a `configs/*.py` file or built from a named preset
(`lookum_jax.benchmarks.presets`), and overridable from the command line
(`--override sampler.steps=128`, `--override sampler.params.paths=3`,
`--override benchmark_options.timeout_s=5`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from lookum_jax import configfile
from lookum_jax.benchmarks.base import Benchmark
from lookum_jax.benchmarks.registry import get_benchmark
from lookum_jax.evaluation import sampler_summary
from lookum_jax.parsing import parse_sampler, sampler_fields
from lookum_jax.sampling import SamplerConfig

# Placeholders the user must override; a run refuses to start while one is left.
MODEL_PATH_PLACEHOLDER = "<set model_path: --override model_path=/path/to/converted-model>"
DATA_PATH_PLACEHOLDER = "<set data_path: --override data_path=/path/to/test.jsonl>"
POLICY_PATH_PLACEHOLDER = "<set policy_path: --policy /path/to/policy-dir>"
DTYPES = ("auto", "bfloat16", "float32")
# Fields that change no output token: left out of the fingerprint that guards resuming.
_NOT_FINGERPRINTED = ("batch_size", "prompt_buckets", "mesh_model", "score_workers",
                      "data_path", "model_name", "sampler_name")
# The papers' setting: 256 tokens in semi-autoregressive blocks of 32, one token per step.
DEFAULT_SAMPLER = SamplerConfig(gen_length=256, block_length=32, steps=256)
SAMPLER_KEY = "sampler"
# `SamplerConfig` fields that configs written before the sampler was nested held flat.
_FLAT_SAMPLER_FIELDS = ("gen_length", "block_length", "steps", "strategy", "params",
                        "temperature", "cfg_scale", "logits_eos_inf", "confidence_eos_eot_inf",
                        "cache")


def is_placeholder(value: str | None) -> bool:
  return isinstance(value, str) and value.startswith("<set ")


def offer_policy_strategies() -> None:
  """Lets benchmark configs, presets and overrides name `policy_rl`'s strategies ("policy",
  "policy_lookum"); imported here, at the edge, so the parser never names `policy_rl`."""
  import policy_rl

  policy_rl.register_strategies()


def sampler_from_dict(values: Mapping[str, Any]) -> SamplerConfig:
  """`sampler_summary`'s inverse; parameters read back from JSON (lists) get their types."""
  offer_policy_strategies()
  return parse_sampler(values, what="sampler", params_what="params")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """One benchmark run.

  Attributes:
    model_path: a converted checkpoint or Hugging Face directory (LLaDA or Dream).
    benchmark: gsm8k, math500, humaneval, mbpp, countdown or sudoku.
    data_path: the benchmark's local JSONL file (see each benchmark's `data_help`).
    tokenizer_path: where the tokenizer is (default: model_path).
    model_name, sampler_name: labels for result files and tables.
    sampler: how to decode (lengths, steps, strategy, cache, ...).
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
  sampler: SamplerConfig = DEFAULT_SAMPLER
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
    if not isinstance(self.sampler, SamplerConfig):
      raise ValueError(f"BenchmarkConfig.sampler must be a SamplerConfig, got "
                       f"{type(self.sampler).__name__}.")
    self.make_benchmark()  # unknown benchmark or option -> ValueError naming the fix
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
      raise ValueError(f"strategy {self.sampler.strategy.name!r} needs policy_path (--policy "
                       "DIR or --override policy_path=DIR).")

  def make_benchmark(self) -> Benchmark:
    return get_benchmark(self.benchmark, **self.benchmark_options)

  @property
  def needs_policy(self) -> bool:
    """The strategy reads a learned policy (`policy_path`)."""
    return self.sampler.strategy.needs_policy

  @property
  def run_name(self) -> str:
    return f"{self.model_name}_{self.benchmark}_{self.sampler_name}"

  def to_dict(self) -> dict[str, Any]:
    """A JSON-friendly dict; `from_dict` reads it back."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out[SAMPLER_KEY] = sampler_summary(self.sampler)
    out["benchmark_options"] = dict(self.benchmark_options)
    out["prompt_buckets"] = list(self.prompt_buckets)
    return out

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> BenchmarkConfig:
    """The config `to_dict` wrote; also reads the older flat layout, whose sampler fields
    (`gen_length`, `steps`, `strategy`, `params`, ...) sat beside the others."""
    values = dict(values)
    sampler = dict(values.pop(SAMPLER_KEY, None) or {})
    for name in _FLAT_SAMPLER_FIELDS:
      if name in values:
        sampler[name] = values.pop(name)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"unknown BenchmarkConfig field(s) {unknown}.")
    if "prompt_buckets" in values:
      values["prompt_buckets"] = tuple(values["prompt_buckets"])
    return cls(sampler=sampler_from_dict({**sampler_summary(DEFAULT_SAMPLER), **sampler}),
               **values)

  def fingerprint(self) -> str:
    """A short hash of every setting that can change an output: a results file holds the
    records of one fingerprint, so a resumed run never mixes configurations."""
    settings = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

  def replace(self, **changes: Any) -> BenchmarkConfig:
    return dataclasses.replace(self, **changes)


def load_config(path: str | os.PathLike) -> BenchmarkConfig:
  """Runs `get_config()` from a Python config file."""
  return configfile.load_config(path, BenchmarkConfig)


def apply_overrides(config: BenchmarkConfig, overrides: Sequence[str]) -> BenchmarkConfig:
  """Applies `key=value` overrides, all together.

  Keys: a field (`model_path=DIR`), `benchmark_options.KEY`, a sampler field
  (`sampler.steps=128`, `sampler.strategy=threshold`: another strategy, at its defaults), or
  one strategy parameter (`sampler.params.tau=0.8`). Values are Python literals (`128`,
  `0.9`, `None`, `(256, 512)`) or bare strings.

  Raises:
    ValueError: naming the override, for a malformed one, an unknown key (listing the valid
      ones), a value of the wrong type, or a combination the configs refuse.
  """
  sampler_overrides = [o for o in overrides if o.strip().startswith(SAMPLER_KEY + ".")]
  others = [o for o in overrides if o not in sampler_overrides]
  changes = {}
  if sampler_overrides:
    changes[SAMPLER_KEY] = _override_sampler(config.sampler, sampler_overrides)
  return configfile.apply_overrides(config, others, mappings=("benchmark_options",),
                                    changes=changes)


def _override_sampler(sampler: SamplerConfig, overrides: Sequence[str]) -> SamplerConfig:
  fields = sorted(sampler_fields())
  values, params = {}, {}
  for override in overrides:
    key, _, text = override.partition("=")
    path = key.strip().split(".")[1:]
    value = configfile.parse_value(text.strip())
    if len(path) >= 2 and path[0] == "params":  # params.tau, or params.base.tau
      params[".".join(path[1:])] = value
    elif len(path) == 1 and (path[0] in fields or path[0] == "strategy"):
      values[path[0]] = value
    else:
      valid = ", ".join(f"sampler.{name}" for name in fields)
      raise ValueError(f"unknown sampler key in override {override!r}; valid: {valid}, "
                       "sampler.strategy, sampler.params.<parameter>.")
  if "strategy" in values:
    values["strategy"] = str(values["strategy"])
  offer_policy_strategies()
  return parse_sampler({**values, "params": params}, base=sampler, what="--override",
                       params_what="--override sampler.params")

"""The papers' evaluation grid as named presets: `preset("llada:gsm8k:lookum2")`, the
`--preset` of `lookum bench`.

A preset name is `model:benchmark:sampler`. Models: LLaDA-8B-Instruct (`llada`), LLaDA 1.5
(`llada15`), Dream-v0-Instruct-7B (`dream`). Settings (LookUM and d1 papers): 256 generated
tokens, semi-autoregressive blocks of 32, temperature 0. Samplers:

- `lowconf`: top-k confidence, 256 steps (one token per step);
- `lowconf128`: top-k confidence, 128 steps (two per step: d1's and LookUM's baseline);
- `threshold`: Fast-dLLM confidence threshold, tau 0.9;
- `lookum2`, `lookum3`: LookUM with K = 2 / 3 paths in the paper's setting
  (`LookUM.paper()`: pool of the 5 most certain positions, whole-response verifier),
  128 steps (two tokens per step, the reported default);
- `policy`: a learned unmasking policy (`--policy DIR`).
- `klass`: KLASS, confidence 0.6, KL 0.015, history 2 (its authors' LLaDA GSM8K setting,
  which they run in blocks of 64);
- `prophet`: Prophet early commit over top-k confidence, 256 steps, gap thresholds
  7.5 / 5.0 / 2.5 (its authors' defaults).
- `pcsampler`: PC-Sampler in its authors' setting (full diffusion, 256 steps, decay 0.25,
  clip 10); calibration is off until a prior is given
  (`--override sampler.params.prior=PRIOR.npy`, the model vocabulary's token frequencies).
- `dus`: the dilated unmasking schedule, base 2 (log2(32) = 5 steps per block of 32).

Model and data paths are placeholders the user overrides (`--override model_path=...`).
"""

from __future__ import annotations

import itertools
from typing import Any

from lookum_jax.benchmarks.config import (
  DEFAULT_SAMPLER,
  POLICY_PATH_PLACEHOLDER,
  BenchmarkConfig,
  offer_policy_strategies,
)
from lookum_jax.parsing import parse_sampler
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.sampling.strategies import LowConfidence, Threshold
from lookum_jax.sampling.strategies.dus import DUS
from lookum_jax.sampling.strategies.klass import KLASS
from lookum_jax.sampling.strategies.pc_sampler import PCSampler
from lookum_jax.sampling.strategies.prophet import Prophet

MODELS: dict[str, dict[str, Any]] = {
    "llada": dict(model_name="llada-8b-instruct"),
    "llada15": dict(model_name="llada-1.5"),
    "dream": dict(model_name="dream-7b-instruct"),
}

# Sampler name -> the `SamplerConfig` changes from the papers' 256 / 32 setting (strategies
# by name go through the parser when a preset is built).
SAMPLERS: dict[str, dict[str, Any]] = {
    "lowconf": dict(strategy=LowConfidence(), steps=256),
    "lowconf128": dict(strategy=LowConfidence(), steps=128),
    "threshold": dict(strategy=Threshold(tau=0.9), steps=256),
    "lookum2": dict(strategy=LookUM.paper(paths=2), steps=128),
    "lookum3": dict(strategy=LookUM.paper(paths=3), steps=128),
    "policy": dict(strategy="policy", steps=256),
    "klass": dict(strategy=KLASS(conf_threshold=0.6, kl_threshold=0.015, history=2),
                  steps=256),
    "prophet": dict(strategy=Prophet(base=LowConfidence()), steps=256),
    "pcsampler": dict(strategy=PCSampler(decay=0.25, clip=10.0), steps=256, block_length=256),
    "dus": dict(strategy=DUS(base=2)),
}

# Prompt lengths per benchmark (tokens, chat template included) -> buckets that fit them.
BUCKETS: dict[str, tuple[int, ...]] = {
    "gsm8k": (256, 384, 512), "math500": (256, 512, 1024), "humaneval": (256, 512, 1024),
    "mbpp": (256, 512, 1024), "countdown": (256, 384), "sudoku": (256, 384),
}


def preset_names() -> list[str]:
  """Every `model:benchmark:sampler` of the grid."""
  return [":".join(cell) for cell in itertools.product(MODELS, BUCKETS, SAMPLERS)]


def preset(name: str, **changes: Any) -> BenchmarkConfig:
  """The config of one cell of the grid (`"llada:gsm8k:lookum2"`), with optional field
  `changes`.

  Raises:
    ValueError: for a malformed name or an unknown part, listing the valid ones.
  """
  parts = name.split(":")
  if len(parts) != 3:
    raise ValueError(f"preset {name!r} must look like model:benchmark:sampler, e.g. "
                     "llada:gsm8k:lookum2.")
  model, benchmark, sampler = parts
  for kind, table, part in (("model", MODELS, model), ("benchmark", BUCKETS, benchmark),
                            ("sampler", SAMPLERS, sampler)):
    if part not in table:
      raise ValueError(f"unknown preset {kind} {part!r} in {name!r}; valid: "
                       f"{', '.join(table)}.")
  offer_policy_strategies()
  sampler_config = parse_sampler(SAMPLERS[sampler], base=DEFAULT_SAMPLER, what="preset")
  fields = dict(benchmark=benchmark, sampler_name=sampler, sampler=sampler_config,
                prompt_buckets=BUCKETS[benchmark], **MODELS[model])
  if sampler_config.strategy.needs_policy:
    fields["policy_path"] = POLICY_PATH_PLACEHOLDER
  fields.update(changes)
  return BenchmarkConfig(**fields)

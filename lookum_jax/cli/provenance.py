"""What an eval record says about where it came from, and a short label for its sampler."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import lookum_jax


def git_commit(path: str | Path | None = None) -> str | None:
  """The commit of the git checkout holding `path` (default: this package), with `+dirty`
  when it has uncommitted changes; None outside a checkout."""
  where = Path(path or Path(lookum_jax.__file__).parent)
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                          text=True, timeout=10)
    if head.returncode != 0:
      return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=where, capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance(*, model_dir: Path, data: str | None, heldout: str | None, seed: int,
               limit: int | None, policy: str | None, command: list[str] | None = None
               ) -> dict[str, Any]:
  """The facts that reproduce a record: model, data file, seed, limit, policy, library
  version and git commit."""
  data_file = Path(data) if data else (model_dir / heldout if heldout else None)
  return {
      "model": str(Path(model_dir).absolute()),
      "data": None if data_file is None else str(data_file.absolute()),
      "seed": seed, "limit": limit,
      "policy": None if policy is None else str(Path(policy).absolute()),
      "lookum_jax_version": lookum_jax.__version__,
      "git_commit": git_commit(),
      "command": command,
  }


# The settings a reader looks for first: shown even at their default value.
ALWAYS_SHOWN = {"threshold": "tau", "entropy_bounded": "gamma", "lookum": "paths",
                "policy": "mode", "policy_lookum": "paths"}


def _short(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, list | tuple):
    return "+".join(map(_short, value))
  return str(value)


def sampler_label(summary: dict[str, Any], default: dict[str, Any]) -> str:
  """A short label, unique per sampler: the strategy's name, then every setting of the
  sampler's JSON form (`evaluation.sampler_summary`) that differs from `default` (the same
  strategy with default settings, at the same response length), e.g. `threshold tau=0.7
  cache=dual`; tau, gamma, paths and a policy's mode are always shown. Steps and blocks are
  shown only when they differ from the response length."""
  parts = [str(summary["strategy"])]
  params, base = summary.get("params") or {}, default.get("params") or {}
  first = ALWAYS_SHOWN.get(parts[0])
  parts += [f"{k}={_short(params[k])}" for k in [first] if k in params]
  parts += [f"{k}={_short(v)}" for k, v in sorted(params.items())
            if k != first and (k not in base or base[k] != v)]
  length = summary.get("gen_length")
  for key, value in summary.items():
    if key in ("strategy", "params", "gen_length"):
      continue
    if key in ("steps", "block_length"):
      if value != length:
        parts.append(f"{'block' if key == 'block_length' else key}={value}")
    elif default.get(key) != value:
      parts.append(f"{key}={_short(value)}")
  return " ".join(parts)


def label_for(config: Any, policy: str | None = None) -> str:
  """`sampler_label` of a `SamplerConfig`, against its strategy's defaults (all its
  parameters shown when the strategy has no default form), with the policy's folder."""
  from lookum_jax.evaluation import sampler_summary
  from lookum_jax.sampling.config import SamplerConfig

  summary = sampler_summary(config)
  length = config.gen_length
  plain = SamplerConfig(gen_length=length, block_length=length, steps=length)
  try:
    default = sampler_summary(plain.replace(strategy=type(config.strategy)()))
  except (TypeError, ValueError):  # a strategy that needs settings
    default = {**sampler_summary(plain), "params": {}}
  label = sampler_label(summary, default)
  if policy:
    label += f" policy={Path(policy).parent.name}/{Path(policy).name}"
  return label

"""Studies that cannot go stale: the shared part of the study scripts in `experiments/`.

A study runs many settings (a sampler on a model's problems, over seeds) and stores each
setting's results in its own file, so an interrupted study resumes. A stored setting is read
back only when its fingerprint matches: a hash of everything that decides its results (the
whole sampler value in its JSON form, the model's files, the task and its problems, the seeds
and n). A changed default (LookUM's did change) or a retrained model re-runs the setting
instead of silently reusing the old records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from lookum_jax.evaluation import EvalResult, evaluate, sampler_summary
from lookum_jax.fingerprint import fingerprint
from lookum_jax.sampling import SamplerConfig

logger = logging.getLogger(__name__)


def file_name(label: str) -> str:
  """A setting's label as a file name (`lookum K=2 is 2/step` -> `lookum_K=2_is_2_step`)."""
  return re.sub(r"[^a-zA-Z0-9.=_-]+", "_", label)


def directory_fingerprint(path: str | os.PathLike, exclude: Sequence[str] = ()) -> str:
  """A hash of every file under `path` but Markdown notes (relative names and bytes): a
  retrained or replaced model gets a new one; a copied one, or an edited model card, keeps
  it. Top-level entries named in `exclude` are left out (a model directory's `policy/`)."""
  root = Path(path)
  digest = hashlib.sha256()
  files = (p for p in root.rglob("*") if p.is_file() and p.suffix != ".md"
           and p.relative_to(root).parts[0] not in exclude)
  for file in sorted(files):
    digest.update(file.relative_to(root).as_posix().encode() + b"\0")
    with open(file, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    digest.update(b"\0")
  return digest.hexdigest()[:16]


def setting_key(config: SamplerConfig, *, model: Any, data: Any, seeds: Sequence[int], n: int,
                **extra: Any) -> dict[str, Any]:
  """Everything that decides a setting's results, as JSON: the whole sampler (every field,
  the strategy's every parameter), the model, the data, the seeds and n; `extra` for
  anything else a script varies (e.g. whether the strategy reads the targets)."""
  return {"sampler": sampler_summary(config), "model": model, "data": data,
          "seeds": list(seeds), "n": n, **extra}


def read_setting(path: str | os.PathLike, key: Mapping[str, Any]) -> list[Any] | None:
  """The results stored at `path` under `key`'s fingerprint; None when there are none, or
  they were written for another key (stale: the caller re-runs)."""
  path = Path(path)
  if not path.is_file():
    return None
  try:
    stored = json.loads(path.read_text())
  except json.JSONDecodeError:
    logger.warning("%s is not valid JSON; re-running its setting.", path)
    return None
  if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint(key):
    logger.info("%s was written for another setting (fingerprint %s, now %s); re-running.",
                path, stored.get("fingerprint") if isinstance(stored, dict) else None,
                fingerprint(key))
    return None
  return stored["results"]


def write_setting(path: str | os.PathLike, key: Mapping[str, Any], results: list[Any]) -> None:
  """Stores `results` with `key` and its fingerprint (atomically: a crash leaves the old
  file or the new one)."""
  path = Path(path)
  payload = {"fingerprint": fingerprint(key), "key": key, "results": results}
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(payload, default=str))
  tmp.replace(path)


def cached_setting(path: str | os.PathLike, key: Mapping[str, Any],
                   run: Callable[[], list[Any]]) -> list[Any]:
  """The setting's results: read back when `path` holds them under `key`, else `run()` and
  stored."""
  results = read_setting(path, key)
  if results is None:
    # As JSON holds them, so a fresh run and a read-back one look the same to the caller.
    results = json.loads(json.dumps(run(), default=str))
    write_setting(path, key, results)
  return results


def lab_identity(lab: Any) -> dict[str, Any]:
  """The model and data parts of a toy-lab setting's key (`lookum_jax.toylab.TaskModel`):
  the model directory's files, the task with its options and the problems themselves. The
  learned policy a model directory may ship (`policy/`) is not the model: shipping or
  retraining it leaves the model's stored settings valid (a policy's own settings carry its
  directory's fingerprint)."""
  task = {"name": lab.task.name, **dataclasses.asdict(lab.task)}
  return {"model": {"dir": Path(lab.model_dir).name,
                    "files": directory_fingerprint(lab.model_dir, exclude=("policy",))},
          "data": {"task": task, "examples": fingerprint(lab.examples)}}


def run_setting(lab: Any, config: SamplerConfig, label: str, seeds: Sequence[int],
                path: str | os.PathLike, *, batch_size: int, targets: Any = None,
                identity: Mapping[str, Any] | None = None) -> list[EvalResult]:
  """One setting of a toy-lab study, one `EvalResult` per seed: read back when `path` holds
  it under the same fingerprint, else evaluated and stored.

  Args:
    lab: the opened model, task and problems (`lookum_jax.toylab.open_task_model`).
    targets: reference responses, passed to strategies that read them (the oracle control).
    identity: `lab_identity(lab)`, computed once per study (it reads the model's files).
  """
  identity = lab_identity(lab) if identity is None else identity
  reads_targets = bool(getattr(config.strategy, "needs_targets", False))
  key = setting_key(config, **identity, seeds=seeds, n=len(lab.examples))

  def run() -> list[dict[str, Any]]:
    results = [evaluate(lab.model, lab.tokenizer, lab.task, lab.examples, config,
                        jax.random.key(seed), batch_size=batch_size, label=label,
                        targets=targets if reads_targets else None) for seed in seeds]
    return [{**r.summary(), "records": r.records} for r in results]

  stored = cached_setting(path, key, run)
  return [EvalResult(**{**r, "ci95": tuple(r["ci95"])}) for r in stored]


def paired_bootstrap(a: Any, b: Any, seed: int = 0, draws: int = 2000
                     ) -> tuple[float, float, float]:
  """Mean of a - b over paired problems, with a 95% percentile bootstrap interval."""
  import numpy as np

  diff = np.asarray(a, float) - np.asarray(b, float)
  rng = np.random.default_rng(seed)
  means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(axis=1)
  return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))

"""Scoring a sampler on a verifiable task: accuracy with a 95% interval, NFE, token errors.

Every example gets its own PRNG key, `fold_in(key, example_index)`, and batches are
padded to one fixed shape (`lookum_jax.decoding`), so an example's output depends on neither
the batch size nor its neighbours, and the whole run compiles one program.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lookum_jax.decoding import decode_and_score, encode_prompts
from lookum_jax.sampling import SamplerConfig
from lookum_jax.tasks import Task, encode_text


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion (well behaved near 0 and 1)."""
  if n == 0:
    return 0.0, 1.0
  p = successes / n
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass
class EvalResult:
  """One sampler on one set of examples."""

  task: str
  label: str
  sampler: dict[str, Any]
  n: int
  correct: int
  accuracy: float
  ci95: tuple[float, float]
  mean_nfe: float
  mean_steps: float
  token_error_rate: float | None
  wall_time_s: float
  compile_time_s: float  # JAX tracing, lowering and compiling within wall_time_s
  # Model, data file, seed, limit, policy, library version, git commit (set by the caller).
  provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
  records: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)

  def summary(self) -> dict[str, Any]:
    """Everything but the per-example records."""
    out = dataclasses.asdict(self)
    out.pop("records")
    return out

  def to_json(self, path: str | os.PathLike, with_records: bool = True) -> None:
    import tempfile

    payload = dataclasses.asdict(self) if with_records else self.summary()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
      with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1, default=str)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise


def sampler_summary(config: SamplerConfig) -> dict[str, Any]:
  """A JSON-friendly description of a sampler config."""
  out = config.to_dict()
  out["strategy"] = config.strategy.name
  out["params"] = config.strategy.to_dict()
  return out


def evaluate(model, tokenizer, task: Task, examples: Sequence[dict[str, Any]],
             config: SamplerConfig, key: jax.Array, *, batch_size: int = 64,
             label: str | None = None, progress: bool = True,
             targets: Any = None, done: Mapping[int, dict[str, Any]] | None = None,
             on_records: Callable[[list[dict[str, Any]]], None] | None = None) -> EvalResult:
  """Decodes every example with `config` and scores it with the task's exact checker.

  `targets` `[len(examples), gen_length]`: reference responses for strategies that read
  them (LookUM's oracle control).

  Resuming: `done` maps example indices to the records of an earlier, interrupted run of the
  same sampler (the caller checks that it is the same); those examples are not decoded again,
  and since every example has its own key the result is the one an uninterrupted run gives.
  `on_records` is called with each batch's new records as soon as they are scored (to append
  them to a file).

  Token error rate: the fraction of response tokens that differ from the reference
  (EOS-padded) response, over examples whose task has a unique answer.
  """
  if not examples:
    raise ValueError("no examples to evaluate.")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  done = {i: r for i, r in (done or {}).items() if i < len(examples)}
  todo = [i for i in range(len(examples)) if i not in done]
  prompts = encode_prompts(tokenizer, task, examples)
  batch_size = min(batch_size, len(examples))
  records = dict(done)
  compile_time, start = 0.0, time.perf_counter()
  bar = tqdm(total=len(examples), initial=len(done), desc=label or config.strategy.name,
             disable=not progress, leave=False)
  for first in range(0, len(todo), batch_size):
    index = todo[first:first + batch_size]
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(index))
    batch = decode_and_score(
        model, tokenizer, task, [examples[i] for i in index], [prompts[i] for i in index],
        keys, config, prompt_length=task.prompt_length, batch_size=batch_size,
        pad_id=tokenizer.pad_token_id,
        targets=None if targets is None else np.asarray(targets)[index])
    compile_time += batch.compile_s
    new = []
    for row, i in enumerate(index):
      record = {"index": i, "response": batch.texts[row], "correct": bool(batch.scores[row]),
                "nfe": int(batch.nfe[row]), "steps": int(batch.num_steps[row]),
                "forward_tokens": int(batch.forward_tokens[row])}
      target = task.target_text(examples[i])
      if target is not None:
        reference = encode_text(tokenizer, target)
        reference += [tokenizer.eos_token_id] * (config.gen_length - len(reference))
        record["token_errors"] = int(
            np.sum(batch.response_ids[row] != np.asarray(reference[:config.gen_length])))
      new.append(record)
      records[i] = record
    if on_records is not None:
      on_records(new)
    bar.update(len(index))
    bar.set_postfix(acc=f"{np.mean([r['correct'] for r in records.values()]):.3f}",
                    nfe=f"{np.mean([r['nfe'] for r in records.values()]):.1f}")
  bar.close()
  wall = time.perf_counter() - start
  ordered = [records[i] for i in range(len(examples))]
  n_correct = sum(r["correct"] for r in ordered)
  scored = [r["token_errors"] for r in ordered if "token_errors" in r]
  return EvalResult(
      task=task.name, label=label or config.strategy.name, sampler=sampler_summary(config),
      n=len(ordered), correct=n_correct, accuracy=n_correct / len(ordered),
      ci95=wilson_interval(n_correct, len(ordered)),
      mean_nfe=float(np.mean([r["nfe"] for r in ordered])),
      mean_steps=float(np.mean([r["steps"] for r in ordered])),
      token_error_rate=(sum(scored) / (len(scored) * config.gen_length)) if scored else None,
      wall_time_s=wall, compile_time_s=compile_time, records=ordered)


def format_table(results: Sequence[EvalResult]) -> str:
  """A fixed-width table: one row per sampler."""
  header = (f"{'sampler':<28} {'acc':>6} {'95% CI':>15} {'NFE':>7} {'steps':>6} "
            f"{'tok.err':>8} {'time s':>7}")
  lines = [header, "-" * len(header)]
  for r in results:
    ter = "-" if r.token_error_rate is None else f"{r.token_error_rate:.4f}"
    ci = f"[{r.ci95[0]:.3f},{r.ci95[1]:.3f}]"
    lines.append(f"{r.label:<28} {r.accuracy:>6.3f} {ci:>15} {r.mean_nfe:>7.1f} "
                 f"{r.mean_steps:>6.1f} {ter:>8} {r.wall_time_s:>7.1f}")
  return "\n".join(lines)

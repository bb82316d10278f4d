"""Runs a sampler on a benchmark with a real (or tiny test) model: sharded, bucketed, resumable.

Flow: load the problems, drop those already in the results file (same configuration
fingerprint), load the model onto a `(data, model)` mesh, apply the chat template, group the
prompts by length bucket (left padding to a few fixed lengths, so each bucket compiles once),
and decode batch by batch. Every problem gets its own PRNG key, `fold_in(seed, crc32(id))`,
and the samplers are batch-invariant, so an output depends neither on the batch it landed in
nor on whether the run was resumed. Each finished problem is appended to the JSONL results
file at once (see `results.py`): killing the run loses at most the batch in flight.

Multi-host (`maybe_initialize_distributed` first): every process runs the same batches on
its share of the mesh; process 0 writes the results (the file must be on storage every
process reads when resuming).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from lookum_jax import loading
from lookum_jax.benchmarks.base import Benchmark
from lookum_jax.benchmarks.config import BenchmarkConfig, is_placeholder
from lookum_jax.benchmarks.results import ResultsFile, finished_records
from lookum_jax.benchmarks.summary import RunSummary, summarize_records
from lookum_jax.decoding import DecodedBatch, decode_and_score
from lookum_jax.model.sharding import DATA_AXIS, make_mesh, shard_model

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class EncodedProblem:
  """A problem with its prompt as given to the tokenizer and the prompt's token ids."""

  problem: dict[str, Any]
  prompt: str
  ids: list[int]

  @property
  def id(self) -> str:
    return self.problem["id"]


def resolve_dtype(name: str) -> tuple[Any, Any]:
  """(compute dtype, param dtype) for a config's `dtype` ("auto": bf16 off CPU)."""
  if name == "auto":
    name = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  dtype = jnp.dtype(name)
  return dtype, (dtype if dtype == jnp.bfloat16 else None)


def check_paths_set(config: BenchmarkConfig) -> None:
  """Raises ValueError naming the override of every path still left as a placeholder."""
  names = ["model_path", "tokenizer_path", "data_path"]
  if config.needs_policy:
    names.append("policy_path")
  unset = [f"{name} is still a placeholder: {getattr(config, name)}" for name in names
           if is_placeholder(getattr(config, name))]
  if unset:
    raise ValueError("; ".join(unset))


def load_for_benchmark(config: BenchmarkConfig) -> tuple[Any, Any, jax.sharding.Mesh]:
  """(model, tokenizer, mesh): the model placed on a `(data, mesh_model)` mesh of every
  device, in the config's dtype."""
  check_paths_set(config)
  devices = jax.device_count()
  if devices % config.mesh_model:
    raise ValueError(f"mesh_model={config.mesh_model} does not divide the {devices} devices; "
                     "pass --override mesh_model=N with N a divisor.")
  mesh = make_mesh(model=config.mesh_model)
  data = mesh.shape[DATA_AXIS]
  if config.batch_size % data:
    raise ValueError(
        f"batch_size={config.batch_size} must be a multiple of the data axis ({data} = "
        f"{devices} devices / mesh_model {config.mesh_model}); e.g. --override "
        f"batch_size={data * max(1, config.batch_size // data)}.")
  dtype, param_dtype = resolve_dtype(config.dtype)
  model = loading.load_model(config.model_path, dtype=dtype, param_dtype=param_dtype, mesh=mesh)
  tokenizer = loading.load_tokenizer(config.tokenizer_path or config.model_path)
  return model, tokenizer, mesh


def load_policy(config: BenchmarkConfig, mesh: jax.sharding.Mesh) -> Any:
  """The learned policy of a policy strategy (replicated on the mesh), else None."""
  if not config.needs_policy:
    return None
  from policy_rl import load_policy as load

  return shard_model(load(config.policy_path), mesh, rules=((r".*", P()),))


def encode_problems(benchmark: Benchmark, problems: Sequence[dict[str, Any]], tokenizer: Any,
                    chat_template: bool) -> list[EncodedProblem]:
  """Prompts as the model sees them: the user message in the chat template, then the
  benchmark's assistant prefix, tokenized with the tokenizer's defaults (as LLaDA's and d1's
  reference evaluation code does: `tokenizer(apply_chat_template(..., tokenize=False))`)."""
  encoded = []
  for problem in problems:
    text = benchmark.prompt(problem)
    if chat_template:
      text = loading.apply_chat_template(tokenizer, text)
    text += benchmark.assistant_prefix(problem)
    ids = tokenizer(text)["input_ids"]
    encoded.append(EncodedProblem(problem, text, list(ids)))
  return encoded


def bucket_length(length: int, buckets: Sequence[int], gen_length: int, context: int,
                  problem_id: str) -> int:
  """The padded prompt length of a prompt of `length` tokens.

  Raises:
    ValueError: when the prompt and the response do not fit the model's context.
  """
  if length + gen_length > context:
    raise ValueError(
        f"problem {problem_id!r}: prompt of {length} tokens + gen_length {gen_length} exceeds "
        f"the model context of {context} tokens; lower gen_length or drop the problem.")
  bucket = next((b for b in buckets if b >= length), None)
  if bucket is None:
    bucket = -(-length // buckets[-1]) * buckets[-1]
  return min(bucket, context - gen_length)


def plan_batches(encoded: Sequence[EncodedProblem], config: BenchmarkConfig, context: int
                 ) -> list[tuple[int, list[int]]]:
  """`(bucket length, indices)` batches of at most `batch_size`, bucket by bucket, in file
  order within a bucket."""
  by_bucket: dict[int, list[int]] = {}
  for i, item in enumerate(encoded):
    bucket = bucket_length(len(item.ids), config.prompt_buckets, config.sampler.gen_length,
                           context, item.id)
    by_bucket.setdefault(bucket, []).append(i)
  return [(bucket, indices[start:start + config.batch_size])
          for bucket, indices in sorted(by_bucket.items())
          for start in range(0, len(indices), config.batch_size)]


def problem_keys(seed: int, ids: Sequence[str]) -> np.ndarray:
  """Raw key data `[B, 2]` of `fold_in(key(seed), crc32(id))` for each problem id."""
  base = jax.random.key(seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
      jnp.asarray([zlib.crc32(i.encode()) & 0x7FFFFFFF for i in ids], jnp.uint32))
  return np.asarray(jax.random.key_data(keys))


def device_memory_report() -> list[str]:
  """One line per local device: bytes in use, peak and limit (GiB), where the backend says."""
  lines = []
  for device in jax.local_devices():
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats:
      lines.append(f"{device}: memory stats not available on this backend")
      continue
    gib = lambda key: stats.get(key, 0) / 2**30  # noqa: B023
    lines.append(f"{device}: in use {gib('bytes_in_use'):.2f} GiB, peak "
                 f"{gib('peak_bytes_in_use'):.2f} GiB, limit {gib('bytes_limit'):.2f} GiB")
  return lines


def response_length(ids: np.ndarray, stop_ids: Sequence[int]) -> int:
  """Tokens before the first stop token."""
  stops = np.isin(ids, np.asarray(stop_ids))
  return int(np.argmax(stops)) if stops.any() else len(ids)


def run_benchmark(config: BenchmarkConfig, out_path: str, *, limit: int | None = None,
                  progress: bool = True, report_memory: bool = False, log: Log = print,
                  loaded: tuple[Any, Any, Any] | None = None) -> RunSummary:
  """Runs (or resumes) `config` and appends one record per problem to `out_path`.

  Args:
    config: the run.
    out_path: the JSONL results file (created; resumed if it holds this run's records).
    limit: only the first `limit` problems of the data file.
    progress: show a tqdm bar with the running accuracy.
    report_memory: log device memory after loading and at the end.
    log: where messages go.
    loaded: an already loaded `(model, tokenizer, mesh)` (tests; repeated runs).
  Returns:
    The summary over every finished problem of the (limited) problem set.
  """
  check_paths_set(config)
  if os.path.realpath(out_path) == os.path.realpath(config.data_path):
    raise ValueError(f"the results file {out_path} is the data file; choose another --out.")
  benchmark = config.make_benchmark()
  problems = benchmark.load(config.data_path)
  if limit is not None:
    if limit <= 0:
      raise ValueError(f"--limit must be positive, got {limit}.")
    problems = problems[:limit]
  fingerprint = config.fingerprint()
  results = ResultsFile(out_path)
  finished = finished_records(results.read(), fingerprint, out_path)
  wanted = {p["id"] for p in problems}
  done = {i: r for i, r in finished.items() if i in wanted}
  todo = [p for p in problems if p["id"] not in finished]
  log(f"{config.run_name}: {len(problems)} problems, {len(done)} already in {out_path}, "
      f"{len(todo)} to run (config {fingerprint}).")
  throughput = Throughput()
  if todo:
    model, tokenizer, mesh = loaded if loaded is not None else load_for_benchmark(config)
    if report_memory:
      log("after loading the model:")
      for line in device_memory_report():
        log("  " + line)
    run = _Run(config=config, fingerprint=fingerprint, benchmark=benchmark, results=results,
               model=model, tokenizer=tokenizer, mesh=mesh, progress=progress)
    throughput = _run_problems(run, todo, list(done.values()))
  if _is_writer():  # other processes do not see the records process 0 wrote
    done = finished_records(results.read(), fingerprint, out_path)
  records = [done[p["id"]] for p in problems if p["id"] in done]
  summary = summarize_records(records, dataclasses.asdict(throughput))
  log(summary.format(config.run_name))
  if report_memory:
    for line in device_memory_report():
      log(line)
  return summary


def _is_writer() -> bool:
  return jax.process_index() == 0


@dataclasses.dataclass
class Throughput:
  """This session's decoding: seconds decoding and compiling, generated tokens (every row's
  `gen_length`) and response tokens (before the stop token)."""

  decode_s: float = 0.0
  compile_s: float = 0.0
  tokens: int = 0
  response_tokens: int = 0

  @property
  def tokens_per_s(self) -> float:
    return self.tokens / max(self.decode_s, 1e-9)


@dataclasses.dataclass(frozen=True)
class _Run:
  """What decoding a run's problems needs: the run, where its records go, the loaded model."""

  config: BenchmarkConfig
  fingerprint: str
  benchmark: Benchmark
  results: ResultsFile
  model: Any
  tokenizer: Any
  mesh: jax.sharding.Mesh
  progress: bool


def _record(run: _Run, item: EncodedProblem, batch: DecodedBatch, row: int,
            output_tokens: int, rows: int) -> dict[str, Any]:
  """The results-file record of one decoded problem."""
  config, score = run.config, batch.scores[row]
  return {
      "id": item.id, "config": run.fingerprint, "model": config.model_name,
      "benchmark": config.benchmark, "sampler": config.sampler_name,
      "strategy": config.sampler.strategy.name, "gen_length": config.sampler.gen_length,
      "block_length": config.sampler.block_length, "sampler_steps": config.sampler.steps,
      "prompt": item.prompt, "prompt_tokens": len(item.ids), "output": batch.texts[row],
      "output_tokens": output_tokens, "extracted": score.extracted,
      "reference": run.benchmark.reference(item.problem), "correct": score.correct,
      "score": score.score, "nfe": int(batch.nfe[row]), "steps": int(batch.num_steps[row]),
      "time_s": round(batch.decode_s / rows, 4),
      "batch_compile_s": round(batch.compile_s, 3), "details": score.details,
  }


def _run_problems(run: _Run, todo: list[dict[str, Any]], previous: list[dict[str, Any]]
                  ) -> Throughput:
  """Decodes and scores `todo`, appending each record to the results file (process 0);
  `previous` (records already in the file) only seeds the progress bar's running means."""
  config, model = run.config, run.model
  sampler = config.sampler
  policy = load_policy(config, run.mesh)
  if policy is not None:
    sampler = sampler.with_policy(policy)
  encoded = encode_problems(run.benchmark, todo, run.tokenizer, config.chat_template)
  batches = plan_batches(encoded, config, model.config.max_sequence_length)
  stop_ids = model.config.stop_token_ids
  throughput = Throughput()
  scores_so_far = [r["score"] for r in previous]
  nfe_so_far = [r["nfe"] for r in previous]
  bar = tqdm(total=len(todo) + len(previous), initial=len(previous), disable=not run.progress,
             desc=config.run_name, dynamic_ncols=True)
  if _is_writer():
    run.results.open()
  try:
    with ThreadPoolExecutor(max_workers=config.score_workers) as pool:
      for bucket, indices in batches:
        rows = [encoded[i] for i in indices]
        batch = decode_and_score(
            model, run.tokenizer, run.benchmark, [r.problem for r in rows], [r.ids for r in rows],
            problem_keys(config.seed, [r.id for r in rows]), sampler, prompt_length=bucket,
            batch_size=config.batch_size, pad_id=model.config.pad_token_id,
            mesh=run.mesh, map_fn=pool.map)
        throughput.decode_s += batch.decode_s
        throughput.compile_s += batch.compile_s
        throughput.tokens += len(rows) * config.sampler.gen_length
        for row, item in enumerate(rows):
          length = response_length(batch.response_ids[row], stop_ids)
          throughput.response_tokens += length
          record = _record(run, item, batch, row, length, len(rows))
          if _is_writer():
            run.results.append(record)
          scores_so_far.append(record["score"])
          nfe_so_far.append(record["nfe"])
        bar.update(len(rows))
        bar.set_postfix(acc=f"{np.mean(scores_so_far):.3f}", nfe=f"{np.mean(nfe_so_far):.1f}",
                        tok_s=f"{throughput.tokens_per_s:.0f}")
  finally:
    bar.close()
    run.results.close()
  return throughput

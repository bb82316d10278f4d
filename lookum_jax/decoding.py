"""Pad, batch, decode and score: the one path from problems to scores.

The toy-lab evaluation (`lookum_jax.evaluation`), the benchmark runner
(`lookum_jax.benchmarks.runner`) and the policy's RL rewards (`policy_rl.environments`) all
pad, cut and score responses here, so the three cannot drift apart.

A batch is filled to a fixed size with copies of its last row (and of that row's key), so
every batch of a run has one shape and compiles once; with one key per row a copy decodes
exactly as its original, and the copies are dropped before scoring.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

from lookum_jax.problems import ProblemSet
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.timing import compile_timer
from lookum_jax.tasks.tokenizer import decode_response, encode_text, left_pad_prompts

T = TypeVar("T")
# `map` or an executor's `map`: how the scorer is applied over a batch's responses.
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclasses.dataclass(frozen=True)
class DecodedBatch:
  """A decoded and scored batch on the host, its real rows only (the filling copies dropped).

  Attributes:
    response_ids: `[N, gen_length]` generated token ids.
    texts: each response's text, cut at the first stop token.
    scores: what the problem set's `score` returned for each response.
    nfe: `[N]` forwards spent on each row.
    num_steps: `[N]` denoising steps of each row.
    forward_tokens: `[N]` positions the row's forwards processed.
    wall_s: seconds the decode took, compiling included.
    compile_s: of which tracing, lowering and compiling.
  """

  response_ids: np.ndarray
  texts: list[str]
  scores: list[Any]
  nfe: np.ndarray
  num_steps: np.ndarray
  forward_tokens: np.ndarray
  wall_s: float
  compile_s: float

  @property
  def decode_s(self) -> float:
    """Seconds spent decoding, compiling excluded."""
    return max(self.wall_s - self.compile_s, 0.0)


def fill_batch(rows: Sequence[T], batch_size: int) -> list[T]:
  """`rows` followed by copies of its last row, up to `batch_size` rows."""
  if not rows or len(rows) > batch_size:
    raise ValueError(f"a batch needs 1 to batch_size={batch_size} rows, got {len(rows)}.")
  return list(rows) + [rows[-1]] * (batch_size - len(rows))


def encode_prompts(tokenizer: Any, problem_set: ProblemSet, problems: Sequence[dict[str, Any]]
                   ) -> list[list[int]]:
  """Prompt token ids of each problem for a character-level (toy-lab) tokenizer."""
  return [encode_text(tokenizer, problem_set.prompt(problem)) for problem in problems]


def response_texts(tokenizer: Any, response_ids: np.ndarray, stop_ids: Sequence[int] | None
                   ) -> list[str]:
  """The text of each row of `response_ids [N, L]`, cut at its first stop token."""
  return [decode_response(tokenizer, row, stop_ids) for row in np.asarray(response_ids)]


def score_responses(problem_set: ProblemSet, problems: Sequence[dict[str, Any]],
                    texts: Sequence[str], map_fn: MapFn = map) -> list[Any]:
  """`problem_set.score(problem, text)` for each pair, applied with `map_fn` (an executor's
  `map` scores in parallel, e.g. code run in a sandbox)."""
  if len(problems) != len(texts):
    raise ValueError(f"{len(problems)} problems but {len(texts)} responses to score.")
  return list(map_fn(lambda pair: problem_set.score(*pair), zip(problems, texts, strict=True)))


def to_host(x: jax.Array) -> np.ndarray:
  """A (possibly multi-host) array's full value on this host."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def decode_and_score(model: Any, tokenizer: Any, problem_set: ProblemSet,
                     problems: Sequence[dict[str, Any]], prompts: Sequence[Sequence[int]],
                     keys: Any, config: SamplerConfig, *, prompt_length: int,
                     batch_size: int, pad_id: int, mesh: Any = None,
                     map_fn: MapFn = map, targets: Any = None) -> DecodedBatch:
  """Decodes one batch of problems with `config` and scores every response.

  Args:
    model: the dLLM (`model.config.stop_token_ids` end a response).
    tokenizer: decodes responses to text.
    problem_set: scores the responses (`problem_set.score`).
    problems: the batch's N problems, N <= batch_size.
    prompts: their prompt token ids, at most `prompt_length` each.
    keys: N PRNG keys, one per problem (typed keys or raw key data `[N, 2]`).
    config: the sampler (its strategy carries a learned policy's weights, if it reads one).
    prompt_length: prompts are left-padded to it.
    batch_size: the batch is filled to this many rows with copies of its last row.
    pad_id: the padding token.
    mesh: a device mesh whose `data` axis the batch is split over (None: no sharding).
    map_fn: applies the scorer (`map`, or an executor's `map`).
    targets: `[N, gen_length]` reference responses, for strategies that read them (the
      oracle control); None otherwise.
  Returns:
    The N real rows, decoded and scored.
  """
  if len(prompts) != len(problems) or len(keys) != len(problems):
    raise ValueError(f"one prompt and one key per problem: got {len(problems)} problems, "
                     f"{len(prompts)} prompts and {len(keys)} keys.")
  rows = fill_batch(range(len(problems)), batch_size)
  ids, mask = left_pad_prompts([prompts[i] for i in rows], prompt_length, pad_id)
  batch_keys = keys[np.asarray(rows)]
  if targets is not None:
    targets = np.asarray(targets)
    if targets.shape != (len(problems), config.gen_length):
      raise ValueError(f"targets must be [problems, gen_length] = "
                       f"{(len(problems), config.gen_length)}, got {targets.shape}.")
    targets = targets[np.asarray(rows)]
  if mesh is not None:
    from lookum_jax.model.sharding import shard_batch

    ids, mask, batch_keys = shard_batch((ids, mask, batch_keys), mesh)
  with compile_timer() as compile_seconds:
    start = time.perf_counter()
    result = generate(model, ids, config, batch_keys, mask, targets=targets)
    tokens = to_host(result.tokens)
    wall = time.perf_counter() - start
  n = len(problems)
  response_ids = tokens[:n, prompt_length:]
  texts = response_texts(tokenizer, response_ids, model.config.stop_token_ids)
  return DecodedBatch(
      response_ids=response_ids, texts=texts,
      scores=score_responses(problem_set, problems, texts, map_fn),
      nfe=to_host(result.nfe)[:n], num_steps=to_host(result.num_steps)[:n],
      forward_tokens=to_host(result.forward_tokens)[:n], wall_s=wall,
      compile_s=compile_seconds[0])

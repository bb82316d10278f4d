"""Training batches generated on the fly, each a pure function of (seed, step).

Because no batch depends on earlier ones, a resumed run sees exactly the batches an
uninterrupted run would, and a background thread can build the next batches while the
accelerator (here: the CPU, through XLA) runs the current step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from lookum_jax.tasks.base import Task
from lookum_jax.tasks.tokenizer import encode_batch

if TYPE_CHECKING:  # for type hints only: importing transformers takes seconds
  import transformers

Batch = dict[str, np.ndarray]


def step_seed(seed: int, step: int) -> int:
  """The generator seed of training step `step` (independent streams per step)."""
  return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0])


def make_batch(task: Task, tokenizer: transformers.PreTrainedTokenizerBase, batch_size: int,
               gen_length: int, seed: int, step: int) -> Batch:
  """The batch of training step `step` (see `encode_batch` for its arrays)."""
  examples = task.generate(batch_size, step_seed(seed, step))
  return encode_batch(task, examples, tokenizer, gen_length=gen_length)


class PrefetchedBatches:
  """Yields `make(step)` for steps `start, ..., end - 1` in order, built `depth` steps ahead
  by a daemon thread. Errors in the thread are re-raised by the consumer."""

  def __init__(self, make: Callable[[int], Batch], start: int, end: int, depth: int = 4):
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._next = start
    self._end = end
    self._thread = threading.Thread(target=self._produce, args=(make, start, end), daemon=True)
    self._thread.start()

  def _produce(self, make: Callable[[int], Batch], start: int, end: int) -> None:
    for step in range(start, end):
      try:
        item = (step, make(step), None)
      except BaseException as e:  # handed to the consumer, which re-raises it
        item = (step, None, e)
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if self._stop.is_set() or item[2] is not None:
        return

  def __iter__(self) -> Iterator[tuple[int, Batch]]:
    return self

  def __next__(self) -> tuple[int, Batch]:
    if self._next >= self._end:
      raise StopIteration
    step, batch, error = self._queue.get()
    if error is not None:
      raise RuntimeError(f"building the batch of step {step} failed: {error}") from error
    assert step == self._next, (step, self._next)
    self._next += 1
    return step, batch

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)

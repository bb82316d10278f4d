"""Compile-time measurement: the seconds JAX spends tracing, lowering and compiling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

# jax.monitoring events whose durations make up a compilation (trace, lower, compile).
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def compile_timer() -> Iterator[list[float]]:
  """Collects the seconds JAX spends tracing, lowering and compiling inside the block.

  Yields a one-element list holding the running total (read it after the block).
  """
  import jax.monitoring

  total = [0.0]

  def listener(event: str, duration: float, **kwargs: Any) -> None:
    if event in COMPILE_EVENTS:
      total[0] += duration

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield total
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)

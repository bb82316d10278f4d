"""The decode loop driven by plain Python loops, eagerly: a reference for the jitted one.

`generate_python_loop` runs exactly the algorithm of `loop.decode` (same setup, same
`StepContext.step`, so the same strategy code, and the same strategy wrapper such as SMC's
particles) one step at a time under `jax.disable_jit()`, with no `jit`, `fori_loop` or
`while_loop`. Tests assert that the compiled loop gives identical tokens under a fixed key,
and use `on_step` to inspect every intermediate state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.loop import GenerationResult, init_decode, result_from
from lookum_jax.sampling.types import LoopState


def generate_python_loop(model: Any, prompt_ids: jax.Array, prompt_mask: jax.Array | None,
                         key: jax.Array, config: SamplerConfig, *, mask_token_id: int,
                         eos_token_id: int, stop_token_ids: tuple[int, ...],
                         targets: jax.Array | None = None,
                         on_step: Callable[[LoopState], None] | None = None
                         ) -> GenerationResult:
  """`decode` with Python loops over blocks and steps, run eagerly (arguments as `decode`).

  Args:
    on_step: called with the state after every step (`on_step(state)`), e.g. to record
      the trajectory of canvases.
  """

  def run(model, prompt_ids, prompt_mask, key, config, **kwargs):
    ctx, state = init_decode(model, prompt_ids, prompt_mask, key, config, **kwargs)
    for block in range(config.num_blocks):
      block_ctx = dataclasses.replace(ctx, static_block=block)
      state = block_ctx.start_block(state, block)
      while bool(block_ctx.block_continues(state)):
        state = block_ctx.step(state)
        if on_step is not None:
          on_step(state)
    return result_from(ctx, state)

  with jax.disable_jit():
    return config.strategy.decode(
        run, model, prompt_ids, prompt_mask, key, config, mask_token_id=mask_token_id,
        eos_token_id=eos_token_id, stop_token_ids=stop_token_ids, targets=targets)

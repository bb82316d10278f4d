"""The compiled loop (`generate`: fori over blocks, while over steps, one XLA program) equals
the eager Python-loop reference (`generate_python_loop`: the same strategy code stepped one
at a time under `disable_jit`) for the strategies with their own steps and every cache mode."""

import jax
import numpy as np
import pytest

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.reference import generate_python_loop
from lookum_jax.testing import decode_kwargs, make_prompts

CASES = [
    ("lookum", {"paths": 2, "selection": "smc", "selection_temperature": 0.1}, "prefix"),
    ("lookum", {"paths": 3, "base": "threshold", "entropy_cost": 0.5, "pool": "eligible",
                "proposal_temperature": 0.1, "search_below": 0.3}, "dual"),  # adaptive
    ("policy_lookum", {"paths": 2}, "none"),
]


@pytest.mark.slow  # eager decodes: 25-40 s each
@pytest.mark.parametrize("name, params, cache", CASES, ids=lambda c: str(c))
def test_jit_loop_equals_python_loop(model_and_policy, name, params, cache):
  model, policy = model_and_policy
  config = SamplerConfig(gen_length=8, block_length=4, steps=4,
                         strategy=parse_strategy(name, params),
                         cache=cache, temperature=0.5)
  prompts = make_prompts(21, batch=2)
  if config.strategy.needs_policy:
    config = config.with_policy(policy)
  key = jax.random.key(4)
  compiled = generate(model, prompts, config, key)
  eager = generate_python_loop(model, jax.numpy.asarray(prompts), None, key, config,
                               **decode_kwargs(model, config))
  np.testing.assert_array_equal(np.asarray(compiled.tokens), np.asarray(eager.tokens))
  np.testing.assert_array_equal(np.asarray(compiled.nfe), np.asarray(eager.nfe))
  np.testing.assert_array_equal(np.asarray(compiled.unmask_order),
                                np.asarray(eager.unmask_order))

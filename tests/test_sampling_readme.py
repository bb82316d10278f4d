"""The worked example of `lookum_jax/sampling/README.md`, executed as written: a new rule in
thirty lines runs in the compiled loop and composes as LookUM's base."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

import lookum_jax.sampling
from lookum_jax.sampling import generate
from lookum_jax.testing import MODEL_CONFIG, make_prompts, random_model

README = Path(lookum_jax.sampling.__file__).parent / "README.md"


def readme_example() -> dict:
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert len(blocks) == 1, "the README holds one worked example"
  namespace: dict = {}
  exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102
  return namespace


def test_the_readme_strategy_runs_and_composes():
  example = readme_example()
  model, prompts = random_model(MODEL_CONFIG), make_prompts(3)
  never_confident = example["left_to_right"].replace(strategy=example["LeftToRight"](tau=1.5))
  result = generate(model, prompts, never_confident, jax.random.key(0))
  order = np.asarray(result.unmask_order)[:, prompts.shape[1]:]
  np.testing.assert_array_equal(order, np.broadcast_to(np.arange(16), order.shape))

  # Composed as LookUM's base (compiling LookUM is left to tests/test_lookum.py).
  lookahead = example["lookahead"].strategy
  assert lookahead.base == example["LeftToRight"](tau=0.9) and lookahead.paths == 2
  assert lookahead.uses_schedule  # the rule's schedule is LookUM's

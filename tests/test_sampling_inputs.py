"""Bad input to `generate` gets a ValueError naming the fix, before anything is compiled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax import SamplerConfig, generate
from lookum_jax.model import init_model, tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import LookUM, Margin

CONFIG = SamplerConfig(gen_length=8, block_length=8, steps=8)


@pytest.fixture(scope="module")
def model():
  return init_model(tiny())


@pytest.mark.parametrize("prompt,mask,message", [
    ([[5, 500, 7]], None, r"prompt_ids\[0, 1\] = 500 is outside the model's vocabulary"),
    ([[5, -1, 7]], None, r"prompt_ids\[0, 1\] = -1 is outside"),
    ([[5, 127, 7]], None, r"prompt_ids\[0, 1\] is the mask token 127"),
])
def test_prompt_tokens_are_checked(model, prompt, mask, message):
  with pytest.raises(ValueError, match=message):
    generate(model, jnp.asarray(prompt, jnp.int32), CONFIG, jax.random.key(0), mask)


def test_padding_may_hold_any_id(model):
  prompt = jnp.asarray([[500, 5, 6]], jnp.int32)
  mask = jnp.asarray([[False, True, True]])
  result = generate(model, prompt, CONFIG, jax.random.key(0), mask)
  assert result.tokens.shape == (1, 11)


def test_mask_override_outside_the_vocabulary(model):
  with pytest.raises(ValueError, match="mask_token_id 1000 is outside"):
    generate(model, jnp.ones((1, 3), jnp.int32), CONFIG.replace(mask_token_id=1000),
             jax.random.key(0))


@pytest.mark.parametrize("key", [0, np.zeros((2,), np.int32), np.zeros((3,), np.uint32)])
def test_keys_must_be_prng_keys(model, key):
  with pytest.raises(ValueError, match=r"key must be a jax.random.key\(seed\)"):
    generate(model, jnp.ones((2, 3), jnp.int32), CONFIG, key)


def test_legacy_and_per_row_keys_are_accepted(model):
  prompt = jnp.ones((2, 3), jnp.int32)
  legacy = generate(model, prompt, CONFIG, jax.random.PRNGKey(0))
  typed = generate(model, prompt, CONFIG, jax.random.key(0))
  np.testing.assert_array_equal(legacy.tokens, typed.tokens)
  per_row = generate(model, prompt, CONFIG, jax.random.split(jax.random.key(0), 2))
  assert per_row.tokens.shape == (2, 11)


def test_changing_strategy_resets_its_params():
  lookum = CONFIG.replace(strategy=parse_strategy("lookum", {"paths": 3}))
  margin = lookum.replace(strategy=parse_strategy("margin"))
  assert margin.strategy == Margin() and margin.strategy.name == "margin"
  assert lookum.replace(steps=4).strategy.paths == 3
  # A name: its defaults.
  assert lookum.replace(strategy=parse_strategy("lookum")).strategy == LookUM()

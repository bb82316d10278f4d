"""Fixtures shared by test modules: the random test model with its PyTorch twin, and with a
small random learned policy. Tests name strategies through the parser, with `policy_rl`'s
names registered as the command line registers them (`policy_rl.register_strategies`)."""

import pytest

from lookum_jax.testing import MODEL_CONFIG, random_model
from policy_rl import register_strategies

register_strategies()


@pytest.fixture(scope="module")
def models():
  """`(model, torch_model)`: the shared random LLaDA and the independent float64 PyTorch
  forward on its weights."""
  torch = pytest.importorskip("torch")
  from lookum_jax.testing.torch_llada import TorchLLaDA

  # One intra-op thread: torch's OpenMP workers spin against JAX's threads on a small CPU
  # (100x slower on 2 cores); the reference's tensors are tiny anyway.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  model = random_model(MODEL_CONFIG)
  yield model, TorchLLaDA.from_jax(model, torch.float64)
  torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_and_policy():
  """`(model, policy)`: the shared random LLaDA and a small randomly initialised policy."""
  from policy_rl import PolicyConfig, init_policy

  policy = init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                       seed=0)
  return random_model(MODEL_CONFIG), policy

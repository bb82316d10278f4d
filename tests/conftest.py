"""Fixtures shared by test modules: the random test model with its PyTorch twin, and with a
small random learned policy. Tests name strategies through the parser, with `policy_rl`'s
names registered as the command line registers them (`policy_rl.register_strategies`)."""

import os

# Tests check what a program computes, not how fast it runs, and the suite's time is mostly
# XLA:CPU compiling a few hundred small programs (README, Tests). At -O0 the backend compiles
# them in about two thirds of the time; the legacy elemental emitters instead of XLA:CPU's
# MLIR fusion emitters halve what is left (test_lookum.py's padded-batch tests: 17.4 s of
# backend compile down to 7.5 s). Both are XLA code generators of the same HLO. Set before the
# first backend use; subprocess tests inherit them and append their own flags.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0",
                  "--xla_cpu_use_fusion_emitters=false"]))

import pytest  # noqa: E402

from lookum_jax.testing import MODEL_CONFIG, random_model
from policy_rl import register_strategies

register_strategies()


def pytest_collection_modifyitems(items):
  """The tests marked slow run first (a stable sort): under `pytest -n 2` a minute-long test
  scheduled last would run alone at the end while the other worker idles."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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

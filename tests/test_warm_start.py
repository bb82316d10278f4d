"""`TrainConfig.init_from`: a run starts from an exported model's weights, checked first."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lookum_jax.training import TrainConfig, mdm

TINY = TrainConfig(
    task="addition", task_options={"max_digits": 3}, d_model=32, n_layers=2, n_heads=2,
    n_kv_heads=1, mlp_hidden_size=64, max_sequence_length=32, batch_size=8, num_steps=10,
    learning_rate=3e-3, warmup_steps=1, seed=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  graphdef, state = mdm.init_train_state(TINY.replace(seed=7), mdm.make_optimizer(TINY))
  from flax import nnx
  return mdm.export_model(nnx.merge(graphdef, state.params),
                          tmp_path_factory.mktemp("warm") / "model"), state.params


def test_the_run_starts_from_the_exported_weights(exported):
  directory, params = exported
  # A longer context than the exported model's: RoPE has no length-bound params.
  config = TINY.replace(init_from=str(directory), max_sequence_length=64)
  _, state = mdm.init_train_state(config, mdm.make_optimizer(config))
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(got, want)
  _, fresh = mdm.init_train_state(TINY, mdm.make_optimizer(TINY))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(fresh.params), jax.tree.leaves(params), strict=True))


def test_a_model_that_does_not_fit_is_refused(exported, tmp_path):
  directory, _ = exported
  wider = TINY.replace(init_from=str(directory), d_model=64, mlp_hidden_size=128)
  with pytest.raises(ValueError, match="does not fit the run's model"):
    mdm.init_train_state(wider, mdm.make_optimizer(wider))
  missing = TINY.replace(init_from=str(tmp_path / "nothing"))
  with pytest.raises(ValueError, match="not an exported model directory"):
    mdm.init_train_state(missing, mdm.make_optimizer(missing))
  with pytest.raises(ValueError, match="init_from must be None or a model directory"):
    TINY.replace(init_from="")

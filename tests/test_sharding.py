"""Sharding rules for both layer layouts, mesh construction and refusal. The sharded forward
and decode on 8 emulated devices are tested in test_sharded_decoding.py (one subprocess)."""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from lookum_jax.model import abstract_model, tiny
from lookum_jax.model import sharding as sh


def test_rules_place_every_llada_param():
  mesh = sh.make_mesh(data=1, model=1)
  specs = {sh._path_name(path): s.spec
           for path, s in sh.param_shardings(abstract_model(tiny()), mesh).items()}
  assert specs["wte"] == P("model", None)
  assert specs["ff_out"] == P(None, "model")
  assert specs["blocks/1/q_proj/kernel"] == P(None, "model")
  assert specs["blocks/1/up_proj/kernel"] == P(None, "model")
  assert specs["blocks/0/attn_out/kernel"] == P("model", None)
  assert specs["blocks/0/ff_out/kernel"] == P("model", None)
  assert specs["blocks/0/attn_norm/weight"] == P() and specs["ln_f/weight"] == P()
  stacked = {sh._path_name(path): s.spec for path, s in
             sh.param_shardings(abstract_model(tiny(), scan_layers=True), mesh).items()}
  assert stacked["blocks/q_proj/kernel"] == P(None, None, "model")  # layer axis unsharded
  assert stacked["blocks/ff_out/kernel"] == P(None, "model", None)
  assert stacked["blocks/ff_norm/weight"] == P(None) and stacked["wte"] == P("model", None)


def test_mesh_must_divide_heads_and_vocab_and_kv_heads_replicate():
  mesh = jax.sharding.AbstractMesh((1, 8), ("data", "model"))
  with pytest.raises(ValueError, match=r"model axis \(8\) does not divide n_heads = 4 and "
                                       r"vocab_size = 100; use a model axis of 2 or 4 .*"
                                       r"make_mesh\(model=4\)"):
    sh.check_mesh(tiny(vocab_size=100), mesh)
  config = tiny(n_heads=8, n_kv_heads=4)  # 4 kv heads on a model axis of 8: k/v replicated
  rules = sh.sharding_rules(config, mesh)
  assert sh.partition_spec("blocks/k_proj/kernel", (2, 64, 32), mesh, rules) == P(None)
  assert sh.partition_spec("blocks/0/v_proj/kernel", (64, 32), mesh, rules) == P()
  assert sh.partition_spec("blocks/q_proj/kernel", (2, 64, 64), mesh, rules) == P(
      None, None, "model")


def test_unmatched_param_and_bad_mesh_are_errors():
  mesh = sh.make_mesh(data=1, model=1)
  with pytest.raises(ValueError, match="no sharding rule matches param 'blocks/0/bias'"):
    sh.partition_spec(("blocks", 0, "bias"), (4,), mesh)
  per_layer_only = ((r"blocks/\d+/.*", P()),)
  with pytest.raises(ValueError, match=r"stacked \(scan_layers=True\).*with_layer_axis"):
    sh.partition_spec("blocks/q_proj/kernel", (2, 4, 4), mesh, per_layer_only)
  with pytest.raises(ValueError, match="needs 4 devices, have 1"):
    sh.make_mesh(data=2, model=2)


def test_maybe_initialize_distributed(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert not sh.maybe_initialize_distributed({})
  assert not sh.maybe_initialize_distributed({"SLURM_NTASKS": "1"})
  assert sh.maybe_initialize_distributed({"SLURM_NTASKS": "4"}) and calls[-1] == {}
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
         "JAX_PROCESS_ID": "1"}
  assert sh.maybe_initialize_distributed(env)
  assert calls[-1] == dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
  with pytest.raises(ValueError, match="set all three"):
    sh.maybe_initialize_distributed({"JAX_COORDINATOR_ADDRESS": "x:1"})

"""A checkpoint loaded scanned and sharded on an 8-device CPU mesh decodes the tokens (and NFE)
of the unscanned single-device model, its forward gives the same logits (both layouts), and its
compiled program never all-gathers a weight.

One subprocess (8 emulated devices): a small random LLaDA is written as Hugging Face
safetensors and as a converted checkpoint (`lookum convert`), both loaded with load_model's
stacked default onto (data 2, model 4) and (data 1, model 8). Every strategy (low_confidence,
threshold, LookUM, the learned policy) runs under every cache mode (none, prefix, dual)
on each mesh: four (strategy, cache) pairs, the same on both meshes (`PAIRS`), so four
single-device reference programs serve eight sharded ones (the full 12-pair cross product
would triple the test's compile time). Dream (uncached) runs on both meshes. The sharding
rules are unit-tested in test_sharding.py, the sharded benchmark runner in
test_run_benchmark.py.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent

SCRIPT = textwrap.dedent("""
    import re, tempfile, time
    start = time.perf_counter()
    import jax, numpy as np
    from flax import nnx
    from jax.sharding import PartitionSpec as P
    import lookum_jax as lj
    from helpers import write_hf_checkpoint
    from lookum_jax.convert import convert_checkpoint, param_mappings
    from lookum_jax.model import make_mesh, shard_batch, shard_model, tiny
    from lookum_jax.model.sharding import param_shardings
    from lookum_jax.sampling.loop import _generate_jit
    from lookum_jax.sampling.lookum import LookUM
    from lookum_jax.sampling.strategies import LowConfidence, Threshold
    from lookum_jax.testing import random_model
    from policy_rl import PolicyConfig, init_policy
    from policy_rl.strategy import Policy
    assert jax.device_count() == 8, jax.devices()


    def strategy(name):
      return {"low_confidence": LowConfidence(), "threshold": Threshold(tau=0.5),
              "lookum": LookUM(paths=2), "policy": Policy()}[name]


    def sampler(name, cache):
      return lj.SamplerConfig(gen_length=16, block_length=8, steps=8, strategy=strategy(name),
                              cache=cache, temperature=0.5)


    def hf_tensors(model):
      # The model's weights under their Hugging Face names, in PyTorch layout.
      flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
      return {m.hf_name: np.asarray(m.to_nnx(np.asarray(flat[m.path].get_value())))
              for m in param_mappings(model.config)}


    # Every strategy and every cache mode on each mesh, one reference program per pair.
    PAIRS = [("low_confidence", "none"), ("threshold", "prefix"), ("lookum", "dual"),
             ("policy", "dual")]
    MESHES = [(2, 4), (1, 8)]
    llada = tiny(n_heads=8, n_kv_heads=4, eos_token_id=19, eot_token_id=101)
    dream = tiny(n_heads=8, n_kv_heads=4, eos_token_id=19, eot_token_id=101,
                 architecture="dream", qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6)
    policy = init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                         seed=0)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 100, (4, 6)).astype(np.int32)
    mask = np.ones_like(prompts, bool); mask[1, :2] = False  # a left-padded row
    keys = jax.random.split(jax.random.key(0), 4)

    def decode(model, name, cache, inputs):
      config = sampler(name, cache)
      if name == "policy":  # the policy's weights as they are now (sharded or not)
        config = config.with_policy(policy)
      result = lj.generate(model, inputs[0], config, inputs[2], inputs[1])
      return np.asarray(result.tokens), np.asarray(result.nfe)

    tmp = tempfile.mkdtemp()
    dirs = {}
    for label, config in (("llada", llada), ("dream", dream)):
      reference = random_model(config)  # unscanned, one device
      hf_dir = f"{tmp}/{label}-hf"
      write_hf_checkpoint(hf_dir, config, tensors=hf_tensors(reference))
      dirs[label] = (hf_dir, str(convert_checkpoint(hf_dir, f"{tmp}/{label}-converted",
                                                    dtype=np.float32)))
      pairs = PAIRS if label == "llada" else [("threshold", "none")]
      expected = {pair: decode(reference, *pair, (prompts, mask, keys)) for pair in pairs}
      for (data, width), checkpoint in zip(MESHES, dirs[label], strict=True):
        mesh = make_mesh(data=data, model=width)
        model = lj.load_model(checkpoint, mesh=mesh)
        assert model.scan_layers, "load_model's default is the stacked layout"
        q = model.blocks.q_proj.kernel[...]
        assert q.sharding.spec == P(None, None, "model"), q.sharding
        inputs = shard_batch((prompts, mask, keys), mesh)
        shard_model(policy, mesh, rules=((r".*", P()),))
        for pair in pairs:
          got = decode(model, *pair, inputs)
          for what, a, b in zip(("tokens", "nfe"), got, expected[pair], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{label} {pair} {what} mesh {mesh}")
        print(label, (data, width), f"equal at {time.perf_counter() - start:.1f} s", flush=True)

    # The compiled program never all-gathers a weight: no all-gather result has a weight's
    # shape (whole, or one layer of a stacked param).
    mesh = make_mesh(data=2, model=4)
    model = lj.load_model(dirs["llada"][0], mesh=mesh)
    weights = {tuple(s.shape) for s in jax.tree.leaves(nnx.state(model, nnx.Param))}
    weights |= {shape[1:] for shape in weights}  # one layer of a stacked param
    gdef, state = nnx.split(model)
    ids = (llada.mask_token_id, llada.eos_token_id, tuple(llada.stop_token_ids))
    gathered = []
    for name, cache in [("lookum", "dual")]:  # the largest program
      p, m, k = shard_batch((prompts, mask, keys), mesh)
      hlo = _generate_jit.lower(gdef, state, p, m, k, None, config=sampler(name, cache),
                                ids=ids).compile().as_text()
      for line in hlo.splitlines():
        if " all-gather(" in line or " all-gather-start(" in line:
          shape = re.search(r"=\\s*\\(?[a-z0-9]+\\[([0-9,]*)\\]", line)
          dims = tuple(int(d) for d in shape.group(1).split(",") if d) if shape else ()
          gathered.append((name, cache, dims))
          assert dims not in weights, f"{name}/{cache} all-gathers a weight: {line.strip()}"
    print("ALL_GATHERS", sorted(set(gathered)), f"at {time.perf_counter() - start:.1f} s")

    # The sharded forward (batch on data, both layouts) equals the single-device one; a batch
    # the data axis does not divide is refused.
    tokens = rng.integers(0, 120, (4, 40)).astype(np.int32)
    fmask = np.ones_like(tokens, bool); fmask[1, :7] = False  # one left-padded row
    forward = nnx.jit(lambda model, t, m: model(t, m))
    plain = lj.load_model(dirs["llada"][0], scan_layers=False)
    expected = np.asarray(forward(plain, tokens, fmask))
    shard_model(plain, mesh)
    assert plain.blocks[0].attn_out.kernel[...].sharding.spec == P("model", None)
    for sharded in (plain, model):
      logits = forward(sharded, *shard_batch((tokens, fmask), mesh))
      assert logits.sharding.spec[0] == "data", logits.sharding
      np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=1e-4)
    try:
      shard_batch(tokens[:3], mesh)
      raise SystemExit("odd batch was not rejected")
    except ValueError as e:
      assert "divisible by the data axis (2)" in str(e), e

    # A mesh that splits a head (or the vocabulary) is refused before anything is read.
    try:
      param_shardings(random_model(tiny()), make_mesh(data=1, model=8))
      raise SystemExit("a model axis of 8 for 4 heads was not refused")
    except ValueError as e:
      assert "does not divide n_heads = 4" in str(e) and "make_mesh(model=4)" in str(e), e
    print("SHARDED_DECODE_OK")
""")


@pytest.mark.slow
def test_scanned_sharded_checkpoints_decode_as_the_single_device_model():
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
  env = {**os.environ, "XLA_FLAGS": flags,
         "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=1800)  # ~90 s of CPU; generous for shared cores
  assert result.returncode == 0 and "SHARDED_DECODE_OK" in result.stdout, (
      result.stdout[-2000:] + result.stderr[-3000:])
  print(result.stdout[-2000:], f"subprocess {time.perf_counter() - start:.1f} s")

"""Each strategy family gives the same tokens on an 8-device simulated CPU mesh (data x model)
as on one device, one family per cache mode: a rule (threshold, prefix cache), LookUM (dual
cache) and the learned policy with LookUM (no cache). The sharded forward itself is tested in
test_sharding.py, the sharded benchmark runner in test_run_benchmark.py."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    import lookum_jax as lj
    from lookum_jax.cli.sampler_args import register_policy_strategies
    from lookum_jax.parsing import parse_strategy
    from lookum_jax.model import make_mesh, shard_batch, shard_model, tiny
    from lookum_jax.testing import random_model
    from policy_rl import PolicyConfig, init_policy
    assert jax.device_count() == 8, jax.devices()
    register_policy_strategies()

    config = tiny(n_heads=8, n_kv_heads=4, eos_token_id=19, eot_token_id=101)
    model = random_model(config)
    policy = init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                         seed=0)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 100, (4, 6)).astype(np.int32)
    mask = np.ones_like(prompts, bool); mask[1, :2] = False  # a left-padded row
    keys = jax.random.split(jax.random.key(0), 4)
    cases = [("threshold", {"tau": 0.5}, "prefix"), ("lookum", {"paths": 2}, "dual"),
             ("policy_lookum", {"paths": 2}, "none")]
    expected = {}
    for name, params, cache in cases:
      sampler = lj.SamplerConfig(gen_length=16, block_length=8, steps=8,
                                 strategy=parse_strategy(name, params), cache=cache,
                                 temperature=0.5)
      if sampler.strategy.needs_policy:
        sampler = sampler.with_policy(policy)
      expected[(name, str(params), cache)] = np.asarray(
          lj.generate(model, prompts, sampler, keys, mask).tokens)

    mesh = make_mesh(data=2, model=4)
    shard_model(model, mesh)
    shard_model(policy, mesh, rules=((r".*", P()),))
    ids, pmask, pkeys = shard_batch((prompts, mask, keys), mesh)
    for name, params, cache in cases:
      sampler = lj.SamplerConfig(gen_length=16, block_length=8, steps=8,
                                 strategy=parse_strategy(name, params), cache=cache,
                                 temperature=0.5)
      if sampler.strategy.needs_policy:
        sampler = sampler.with_policy(policy)  # the sharded policy's weights
      got = np.asarray(lj.generate(model, ids, sampler, pkeys, pmask).tokens)
      np.testing.assert_array_equal(got, expected[(name, str(params), cache)],
                                    err_msg=f"{name} {params} cache={cache}")
    print("SHARDED_DECODE_OK", len(cases))
""")


@pytest.mark.slow
def test_every_strategy_and_cache_mode_decodes_the_same_on_a_mesh():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0 and "SHARDED_DECODE_OK" in result.stdout, result.stderr[-3000:]

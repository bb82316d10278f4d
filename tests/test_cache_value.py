"""The cache mode, the refresh schedule and the block start are values: names exist only at
the edge (one table each), the JSON form and the fingerprints are the names as before, and no
string comparison chooses behaviour inside `lookum_jax/sampling/`. Nothing here decodes."""

import re
from pathlib import Path

import jax
import pytest

import lookum_jax as lj
from lookum_jax.benchmarks.config import sampler_from_dict
from lookum_jax.evaluation import sampler_summary
from lookum_jax.fingerprint import canonical_json, fingerprint
from lookum_jax.parsing import parse_sampler
from lookum_jax.sampling import (
    CACHE_MODES,
    AdaptiveRefresh,
    DualCache,
    FullStart,
    NoCache,
    PeriodicRefresh,
    PrefixCache,
    SamplerConfig,
    VicinityStart,
)
from lookum_jax.studies import setting_key

SAMPLING = Path(lj.__file__).parent / "sampling"
NAMED = dict(gen_length=16, block_length=8, steps=16, cache="prefix", cache_refresh="adaptive",
             refresh_threshold=0.2, block_start="vicinity")


def test_a_name_and_its_value_give_the_same_config_json_and_program():
  named = SamplerConfig(**NAMED)
  valued = SamplerConfig(**{**NAMED, "cache": PrefixCache(), "block_start": VicinityStart()})
  assert named == valued and hash(named) == hash(valued)
  assert (named.cache, named.block_start) == (PrefixCache(), VicinityStart())
  assert named.refresh_schedule == AdaptiveRefresh() and named.cache_refresh == "adaptive"
  # The same compiled program: the jit key is the tree's structure.
  assert jax.tree.structure(named) == jax.tree.structure(valued)
  summary = sampler_summary(valued)
  assert (summary["cache"], summary["block_start"]) == ("prefix", "vicinity")
  assert summary == sampler_summary(named)
  # The JSON and fingerprints that commit d2b6ae7 (modes as names) gives for this config:
  # stored results and study caches stay valid.
  assert canonical_json(summary) == (
      '{"block_length":8,"block_start":"vicinity","cache":"prefix","cache_refresh":"adaptive",'
      '"cfg_scale":0.0,"confidence_eos_eot_inf":false,"gen_length":16,"logits_eos_inf":false,'
      '"mask_token_id":null,"params":{},"refresh_from_layer":0,"refresh_threshold":0.2,'
      '"steps":16,"strategy":"low_confidence","temperature":0.0}')
  assert fingerprint(summary) == "1ddb2ae90ad6f695"
  assert fingerprint(setting_key(valued, model="m", data="d", seeds=[0], n=1)) == (
      "11f742ceecbc8b9a")
  # The JSON form reads back to the config, through the parser and the benchmark configs.
  assert parse_sampler(summary) == named and sampler_from_dict(summary) == named
  assert parse_sampler({"cache": DualCache()}).cache == DualCache()


def test_every_name_has_its_value():
  assert {name: mode().name for name, mode in CACHE_MODES.items()} == {
      "none": "none", "prefix": "prefix", "dual": "dual"}
  assert SamplerConfig().cache == NoCache() and SamplerConfig().block_start == FullStart()
  assert SamplerConfig(cache="dual", cache_refresh=2).refresh_schedule == PeriodicRefresh(2)
  assert SamplerConfig(cache="dual").window_length == 32  # the block
  assert SamplerConfig().window_length == 128  # the response
  assert NoCache() != PrefixCache() and PrefixCache() == PrefixCache()
  assert lj.DualCache is DualCache


def test_the_refresh_threshold_stays_a_traced_leaf():
  low = SamplerConfig(**{**NAMED, "refresh_threshold": 0.1})
  high = SamplerConfig(**{**NAMED, "refresh_threshold": 0.5})
  assert jax.tree.structure(low) == jax.tree.structure(high)
  assert 0.5 in jax.tree.leaves(high)


@pytest.mark.parametrize("fields, message", [
    ({"cache": "full"}, r"SamplerConfig.cache must be one of \('none', 'prefix', 'dual'\), "
                        r"got 'full'"),
    ({"cache": 3}, r"SamplerConfig.cache must be one of \('none', 'prefix', 'dual'\)"),
    ({"cache": "dual", "block_start": "near"},
     r"SamplerConfig.block_start must be one of \('full', 'vicinity'\), got 'near'"),
    ({"cache": "dual", "cache_refresh": "sometimes"}, "int >= 0 or 'adaptive'"),
    ({"block_start": "vicinity"}, "block_start='vicinity' refreshes a cache"),
])
def test_a_bad_name_names_the_valid_ones(fields, message):
  with pytest.raises(ValueError, match=message):
    SamplerConfig(**fields)


def test_the_parser_names_where_a_bad_cache_came_from():
  with pytest.raises(ValueError, match=r"model_args cache=full: SamplerConfig.cache must be "
                                       r"one of \('none', 'prefix', 'dual'\)"):
    parse_sampler({"cache": "full"}, what="model_args")


def test_a_user_defined_cache_value_is_taken_as_is():
  class Wide(DualCache):
    """The dual cache, under another name (a user's own mode)."""

    __slots__ = ()
    name = "wide"

  config = SamplerConfig(gen_length=16, block_length=8, steps=16, cache=Wide())
  assert config.cache == Wide() and config.cache != DualCache()
  assert sampler_summary(config)["cache"] == "wide"


# Lines of `lookum_jax/sampling/` whose string comparison chooses no behaviour: filters over
# dataclass field or parameter names (`for name in (...)` loops are skipped by the pattern).
ALLOWED = {
    ("config.py", 'if f.name != "strategy"}'),  # to_dict: every field but the strategy
    ("types.py", 'f.name != "cache"}'),  # take_paths: the cache is gathered on its own axis
    ("prophet.py", 'if name != "base"}'),  # to_dict: the base has its own JSON form
    ("prophet.py", 'if name != "base" and'),  # label: likewise
}
COMPARISON = re.compile(r"""(==|!=)\s*["']|["']\s*(==|!=)|(?<!for )\b\w+ (not )?in \(["']""")


def test_no_string_comparison_chooses_behaviour_in_sampling():
  found = []
  for path in sorted(SAMPLING.rglob("*.py")):
    for number, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split("#")[0]
      if COMPARISON.search(code) and not any(
          path.name == name and text in code for name, text in ALLOWED):
        found.append(f"{path.relative_to(SAMPLING)}:{number}: {line.strip()}")
  assert not found, ("names are turned into values at the edge (a table lookup), not "
                     "compared inside sampling/:\n" + "\n".join(found))


def test_comparing_a_value_with_a_name_fails_loudly():
  """Code that compared `config.cache == "prefix"` would silently read False; it raises."""
  with pytest.raises(TypeError, match=r"compare its `.name`"):
    assert SamplerConfig(cache="prefix").cache == "prefix"
  assert SamplerConfig(cache="prefix").cache.name == "prefix"

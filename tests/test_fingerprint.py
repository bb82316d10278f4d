import pytest

from lookum_jax.fingerprint import canonical_json, fingerprint


def test_equal_values_equal_fingerprints_any_key_order():
  assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1})
  assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_any_nested_change_changes_the_fingerprint():
  base = {"sampler": {"strategy": "lookum", "params": {"paths": 2, "tau": 0.9}}, "n": 100}
  changed = {"sampler": {"strategy": "lookum", "params": {"paths": 2, "tau": 0.91}}, "n": 100}
  assert fingerprint(base) != fingerprint(changed)
  assert len(fingerprint(base)) == 16


def test_unserialisable_value_is_refused_with_the_fix():
  with pytest.raises(TypeError, match="to_dict"):
    fingerprint({"x": object()})

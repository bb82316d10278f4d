"""Studies that cannot go stale: a stored setting is reused only under the same fingerprint."""

import types

import pytest

from lookum_jax import studies
from lookum_jax.evaluation import EvalResult
from lookum_jax.fingerprint import fingerprint
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.tasks import get_task


def _sampler(**lookum_fields) -> SamplerConfig:
  """The one place this file builds a strategy: LookUM with flat parameters changed."""
  return SamplerConfig(gen_length=16, block_length=16, steps=8,
                       strategy=LookUM.from_params({"paths": 2, **lookum_fields}))


def _key(config: SamplerConfig, **changes):
  fields = dict(model={"dir": "m", "files": "abc"}, data={"examples": "d"}, seeds=[0, 1], n=10)
  return studies.setting_key(config, **{**fields, **changes})


def test_the_fingerprint_covers_the_whole_sampler_and_the_setting():
  base = fingerprint(_key(_sampler()))
  assert fingerprint(_key(_sampler())) == base  # an equal value: the same key
  changed = [
      _key(_sampler(pool_size=5)),                       # a strategy parameter
      _key(_sampler(selection_temperature=0.02)),        # a float knob
      _key(_sampler().replace(cache="dual", block_length=8, steps=8)),  # a sampler field
      _key(_sampler().replace(temperature=0.5)),
      _key(_sampler(), model={"dir": "m", "files": "abd"}),  # retrained weights
      _key(_sampler(), data={"examples": "e"}),
      _key(_sampler(), seeds=[0]),
      _key(_sampler(), n=11),
  ]
  assert len({fingerprint(k) for k in changed} | {base}) == len(changed) + 1


def test_a_stale_record_is_not_reused(tmp_path):
  path, runs = tmp_path / "setting.json", []

  def run():
    runs.append(1)
    return [{"accuracy": len(runs)}]

  key = _key(_sampler())
  assert studies.cached_setting(path, key, run) == [{"accuracy": 1}]
  assert studies.cached_setting(path, key, run) == [{"accuracy": 1}] and len(runs) == 1
  # A changed default of the strategy is a new setting: it runs again and replaces the file.
  stale = _key(_sampler(pool_size=4))
  assert studies.cached_setting(path, stale, run) == [{"accuracy": 2}] and len(runs) == 2
  assert studies.read_setting(path, key) is None
  # Files written before fingerprints (seeds and n only) are never trusted.
  path.write_text('{"seeds": [0, 1], "n": 10, "results": []}')
  assert studies.read_setting(path, stale) is None


def test_model_files_and_problems_are_part_of_the_key(tmp_path):
  model_dir = tmp_path / "model"
  (model_dir / "params").mkdir(parents=True)
  (model_dir / "params" / "weights").write_bytes(b"\x00" * 8)
  task = get_task("addition")
  lab = types.SimpleNamespace(model_dir=model_dir, task=task,
                              examples=task.generate(3, seed=0))
  before = studies.lab_identity(lab)
  assert studies.lab_identity(lab) == before
  (model_dir / "MODEL_CARD.md").write_text("notes")  # documentation decides no result
  assert studies.lab_identity(lab) == before
  (model_dir / "policy" / "params").mkdir(parents=True)  # a shipped policy is not the model
  (model_dir / "policy" / "params" / "weights").write_bytes(b"\x02")
  assert studies.lab_identity(lab) == before
  assert studies.directory_fingerprint(model_dir) != studies.directory_fingerprint(
      model_dir, exclude=("policy",))
  (model_dir / "params" / "weights").write_bytes(b"\x00" * 7 + b"\x01")
  retrained = studies.lab_identity(lab)
  assert retrained["model"] != before["model"] and retrained["data"] == before["data"]
  lab.examples = task.generate(3, seed=1)
  assert studies.lab_identity(lab)["data"] != before["data"]


def test_run_setting_evaluates_once_per_fingerprint(tmp_path, monkeypatch):
  calls = []

  def fake_evaluate(model, tokenizer, task, examples, config, key, *, batch_size, label,
                    targets):
    calls.append(config)
    return EvalResult(task=task.name, label=label, sampler={}, n=len(examples), correct=1,
                      accuracy=1 / len(examples), ci95=(0.0, 1.0), mean_nfe=4.0,
                      mean_steps=4.0, token_error_rate=None, wall_time_s=0.0,
                      compile_time_s=0.0, records=[{"correct": True}])

  monkeypatch.setattr(studies, "evaluate", fake_evaluate)
  task = get_task("addition")
  (tmp_path / "model").mkdir()
  lab = types.SimpleNamespace(model=None, tokenizer=None, task=task,
                              model_dir=tmp_path / "model", examples=task.generate(2, seed=0))
  path = tmp_path / "runs.json"
  first = studies.run_setting(lab, _sampler(), "K=2", [0, 1], path, batch_size=2)
  again = studies.run_setting(lab, _sampler(), "K=2", [0, 1], path, batch_size=2)
  assert len(calls) == 2 and first == again and first[0].ci95 == (0.0, 1.0)
  studies.run_setting(lab, _sampler(pool_size=4), "K=2", [0, 1], path, batch_size=2)
  assert len(calls) == 4


def test_an_unserialisable_sampler_value_is_refused(tmp_path):
  key = _key(_sampler())
  key["sampler"]["params"]["opaque"] = object()
  with pytest.raises(TypeError, match="cannot fingerprint"):
    studies.cached_setting(tmp_path / "x.json", key, list)

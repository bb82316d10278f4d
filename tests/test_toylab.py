"""The toy lab end to end: the shipped models, `lookum eval` and `lookum demo`."""

import json

import jax
import jax.numpy as jnp
import pytest

import lookum_jax as lj
from lookum_jax.cli import main
from lookum_jax.cli.evaluate import demo_samplers
from lookum_jax.evaluation import evaluate, wilson_interval
from lookum_jax.loading import available_models
from lookum_jax.toylab import open_task_model


@pytest.mark.parametrize("name,task,gen_length", [("toy-sudoku", "sudoku", 16),
                                                    ("toy-addition", "addition", 8)])
def test_shipped_toy_model_loads_by_name(name, task, gen_length):
  assert name in available_models()
  model, tokenizer = lj.load_model(name), lj.load_tokenizer(name)
  opened = open_task_model(name, limit=3)
  assert opened.task.name == task and len(opened.examples) == 3
  assert opened.spec.gen_length == opened.gen_length == gen_length
  ids = tokenizer.encode(opened.task.prompt_text(opened.examples[0]), add_special_tokens=False)
  logits = model(jnp.asarray([ids]))
  assert logits.shape == (1, len(ids), model.config.vocab_size)
  assert model.config.mask_token_id == tokenizer.mask_token_id


def test_shipped_model_solves_held_out_puzzles_greedily():
  """The model card's claim at a small scale: one token per step solves most puzzles."""
  opened = open_task_model("toy-sudoku", limit=64)
  config = lj.SamplerConfig(gen_length=16, block_length=16, steps=16)
  result = evaluate(opened.model, opened.tokenizer, opened.task, opened.examples, config,
                    jax.random.key(0), batch_size=64, progress=False)
  assert 0.4 <= result.accuracy <= 0.95
  assert result.mean_nfe == 16


def test_eval_writes_a_json_record(tmp_path, capsys):
  out = tmp_path / "record.json"
  assert main(["eval", "--limit", "8", "--batch-size", "8", "--strategy", "threshold",
               "--tau", "0.8", "--no-progress", "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  assert record["n"] == 8 and record["sampler"]["strategy"] == "threshold"
  assert record["sampler"]["params"] == {"tau": 0.8}
  assert len(record["records"]) == 8 and 0 <= record["accuracy"] <= 1
  assert "threshold" in capsys.readouterr().out


def test_eval_reports_malformed_lines_by_number(tmp_path, capsys):
  data = tmp_path / "bad.jsonl"
  good = json.dumps({"puzzle": "1234341221434321".replace("1", "0", 2),
                     "solution": "1234341221434321"})
  data.write_text(good + "\nnot json\n" + json.dumps({"puzzle": "12"}) + "\n")
  assert main(["eval", "--data", str(data), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "lines 2, 3" in err


def test_unknown_strategy_is_a_clear_error(capsys):
  assert main(["eval", "--limit", "2", "--strategy", "oracle", "--no-progress"]) == 2
  assert "unknown strategy 'oracle'" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
  """The demo's line-up, table, files and plot; its samplers' decoding is stubbed (every
  response left EOS) so that the test compiles none of the 13 programs."""

  from test_readme import _no_decoding

  monkeypatch.setattr("lookum_jax.decoding.generate", _no_decoding)
  out = tmp_path / "demo"
  assert main(["demo", "--limit", "4", "--batch-size", "4", "--no-progress",
               "--out-dir", str(out)]) == 0
  results = json.loads((out / "results.json").read_text())
  labels = [r["label"] for r in results]
  assert labels[:len(demo_samplers(16, 16))] == [label for label, _ in demo_samplers(16, 16)]
  assert all(r["n"] == 4 for r in results)
  assert (out / "accuracy_vs_nfe.png").stat().st_size > 1000
  assert (out / "results.csv").read_text().count("\n") == len(results) + 1


def test_demo_on_toy_chain_shows_its_shipped_policy(tmp_path, monkeypatch):
  """toy-chain ships a learned policy (issue 22); the demo finds it in the model directory and
  adds its row (decoding stubbed, as above), and the policy reads what the model gives it."""
  from test_readme import _no_decoding

  import policy_rl

  policy_dir = lj.loading.resolve_path("toy-chain") / "policy"
  policy = policy_rl.load_policy(policy_dir)
  assert policy.config.features == ("confidence",)
  monkeypatch.setattr("lookum_jax.decoding.generate", _no_decoding)
  out = tmp_path / "demo"
  assert main(["demo", "--model", "toy-chain", "--limit", "2", "--batch-size", "2",
               "--no-progress", "--out-dir", str(out)]) == 0
  results = json.loads((out / "results.json").read_text())
  assert results[-1]["label"] == "learned policy"
  assert results[-1]["provenance"]["policy"] == str(policy_dir)
  assert results[-1]["sampler"]["params"]["mode"] == "deterministic"


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (37, 100)])
def test_wilson_interval_brackets_the_estimate(k, n):
  low, high = wilson_interval(k, n)
  assert 0 <= low <= k / n <= high <= 1
  assert high - low < 0.35


@pytest.mark.parametrize("k,n,expected", [
    (0, 10, (0.0, 0.27754)),   # Wald: (0, 0)
    (10, 10, (0.72246, 1.0)),  # Wald: (1, 1)
    (5, 10, (0.23659, 0.76341)),  # Wald: (0.190, 0.810)
    (1, 20, (0.00888, 0.23614)),  # Wald: (0, 0.146)
    (37, 100, (0.28182, 0.46780)),  # Wald: (0.275, 0.465)
])
def test_wilson_interval_matches_known_values(k, n, expected):
  """Published Wilson score bounds (z = 1.96), which a normal (Wald) interval misses."""
  low, high = wilson_interval(k, n)
  assert low == pytest.approx(expected[0], abs=1e-5)
  assert high == pytest.approx(expected[1], abs=1e-5)

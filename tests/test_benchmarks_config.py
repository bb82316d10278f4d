"""Benchmark run configs (validation, overrides, presets and their files), result files that
survive a kill, and the summary table."""

import json
from pathlib import Path

import pytest

from lookum_jax.benchmarks import BenchmarkConfig, apply_overrides, load_config, presets
from lookum_jax.benchmarks.results import ResultsFile, finished_records
from lookum_jax.benchmarks.summary import format_table, group_runs, plot_runs, summarize_records

CONFIGS_DIR = Path(__file__).parent.parent / "configs"


def test_preset_grid_matches_the_papers_settings():
  config = presets.preset("llada", "gsm8k", "lookum2")
  assert (config.gen_length, config.block_length, config.steps) == (256, 32, 128)
  assert config.strategy == "lookum" and config.params == {"paths": 2, "pool_size": 5}
  assert presets.preset("llada15", "math500", "lowconf").steps == 256
  assert presets.preset("dream", "sudoku", "threshold").params == {"tau": 0.9}
  sampler = presets.preset("llada", "mbpp", "lookum3").sampler_config()
  assert sampler.strategy.paths == 3 and sampler.steps_per_block == 16
  with pytest.raises(ValueError, match="unknown preset sampler 'lookum9'"):
    presets.preset("llada", "gsm8k", "lookum9")


def test_config_files_are_the_generated_presets(tmp_path):
  expected = {p.name for p in presets.write_config_files(tmp_path)}
  on_disk = {p.name for p in CONFIGS_DIR.glob("*.py")
             if p.name.split("_")[0] in presets.MODELS and p.name.count("_") == 2}
  assert on_disk == expected, "run: python -m lookum_jax.benchmarks.presets configs/"
  config = load_config(CONFIGS_DIR / "llada_gsm8k_lookum2.py")
  assert config == presets.preset("llada", "gsm8k", "lookum2")
  assert load_config(CONFIGS_DIR / "dream_humaneval_policy.py").strategy == "policy"


def test_overrides_set_fields_params_and_options():
  config = apply_overrides(presets.preset("llada", "humaneval", "lookum2"), [
      "model_path=/data/llada", "steps=64", "params.paths=3", "params.verifier=confidence",
      "benchmark_options.timeout_s=5", "prompt_buckets=(128, 256)", "temperature=1",
      "data_path=123"])
  assert config.model_path == "/data/llada" and config.steps == 64
  assert config.params == {"paths": 3, "pool_size": 5, "verifier": "confidence"}
  assert config.benchmark_options == {"timeout_s": 5}
  assert config.prompt_buckets == (128, 256) and config.temperature == 1.0
  assert config.data_path == "123"


@pytest.mark.parametrize("override, message", [
    ("stepz=3", r"unknown config key 'stepz'.*valid keys of BenchmarkConfig: model_path"),
    ("steps", r"not of the form key=value"),
    ("steps=lots", r"steps must be int, got 'lots'"),
    ("steps=100", r"steps \(100\) must be a multiple of the number of blocks \(8"),
    ("benchmark=gsm9k", r"unknown benchmark 'gsm9k'"),
    ("benchmark_options.timeout=1", r"has no option\(s\) \['timeout'\]"),
    ("params.paths=0", r"lookum: paths must be >= 1"),
    ("strategy=nope", r"nope"),
    ("prompt_buckets=(512, 256)", r"prompt_buckets must be increasing"),
    ("dtype=fp8", r"dtype must be one of"),
    ("batch_size=0", r"batch_size must be a positive int"),
])
def test_bad_overrides_name_the_fix(override, message):
  with pytest.raises(ValueError, match=message):
    apply_overrides(presets.preset("llada", "humaneval", "lookum2"), [override])


def test_fingerprint_tracks_outputs_not_batching():
  base = presets.preset("llada", "gsm8k", "lowconf")
  assert base.fingerprint() == base.replace(batch_size=32, mesh_model=8).fingerprint()
  assert base.fingerprint() != base.replace(steps=128).fingerprint()
  assert base.fingerprint() != base.replace(model_path="/other").fingerprint()
  with pytest.raises(ValueError, match="strategy 'policy' needs policy_path"):
    BenchmarkConfig(strategy="policy")


def test_results_file_tolerates_a_truncated_last_line(tmp_path):
  path = tmp_path / "r.jsonl"
  with ResultsFile(path) as results:
    results.append({"id": "a", "config": "x"})
    results.append({"id": "b", "config": "x"})
  with open(path, "a") as f:
    f.write('{"id": "c", "conf')  # killed mid-write
  with pytest.warns(UserWarning, match="truncated last line"):
    assert [r["id"] for r in ResultsFile(path).read()] == ["a", "b"]
  with pytest.warns(UserWarning), ResultsFile(path) as results:
    results.append({"id": "c", "config": "x"})
  lines = path.read_text().splitlines()
  assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_results_file_rejects_damage_and_other_configs(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text('{"id": "a", "config": "x"}\ngarbage\n{"id": "b", "config": "x"}\n')
  with pytest.raises(ValueError, match=r"line\(s\) \[2\] are not valid result records"):
    ResultsFile(path).read()
  records = [{"id": "a", "config": "x"}, {"id": "a", "config": "x"}, {"id": "b", "config": "y"}]
  with pytest.raises(ValueError, match=r"another configuration \(fingerprint\(s\) \['y'\]"):
    finished_records(records, "x", path)
  assert list(finished_records(records[:2], "x", path)) == ["a"]


def _record(problem_id, sampler, benchmark, correct, nfe, score=None):
  return {"id": problem_id, "config": sampler, "model": "llada", "gen_length": 256,
          "sampler": sampler, "benchmark": benchmark, "correct": correct,
          "score": float(correct) if score is None else score, "nfe": nfe, "steps": nfe,
          "output_tokens": 10}


def test_summary_table_and_plots(tmp_path):
  records = [_record(str(i), "lowconf", "gsm8k", i < 3, 256) for i in range(4)]
  records += [_record(str(i), "lookum2", "gsm8k", i < 4, 256) for i in range(4)]
  records += [_record("0", "lookum2", "sudoku", False, 256, score=0.5)]
  runs = group_runs(records + records[:1])  # a duplicated record counts once
  table = format_table(runs)
  assert "llada, gen_length 256" in table
  lowconf = next(line for line in table.splitlines() if line.startswith("lowconf"))
  assert " 75.0 (256.0) [4]" in lowconf and lowconf.rstrip().endswith("-")
  assert "100.0 (256.0) [4]" in table and " 50.0 (256.0) [1]" in table
  summary = summarize_records(records[:4], {"tokens": 1024, "response_tokens": 40,
                                            "decode_s": 2.0, "compile_s": 1.0})
  assert summary.accuracy == 0.75 and summary.tokens_per_s == 512.0
  assert "512.0 generated tokens/s (20.0 before the stop token)" in summary.format("run")
  files = plot_runs(runs, tmp_path)
  assert sorted(p.name for p in files) == ["llada_gsm8k_256_accuracy_vs_nfe.png",
                                           "llada_sudoku_256_accuracy_vs_nfe.png"]
  assert all(p.stat().st_size > 1000 for p in files)

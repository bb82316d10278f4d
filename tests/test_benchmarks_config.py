"""Benchmark run configs (validation, the nested sampler, overrides, presets), result files
that survive a kill, and the summary table."""

import json

import pytest

from lookum_jax.benchmarks import BenchmarkConfig, apply_overrides, load_config, presets
from lookum_jax.benchmarks.results import ResultsFile, finished_records
from lookum_jax.benchmarks.summary import format_table, group_runs, plot_runs, summarize_records
from lookum_jax.cli import build_parser
from lookum_jax.cli.bench import bench_config
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig


def test_preset_grid_matches_the_papers_settings():
  config = presets.preset("llada:gsm8k:lookum2")
  sampler = config.sampler
  assert (sampler.gen_length, sampler.block_length, sampler.steps) == (256, 32, 128)
  assert (sampler.strategy.name, sampler.strategy.paths,
          sampler.strategy.to_dict()["pool_size"]) == ("lookum", 2, 5)
  assert presets.preset("llada15:math500:lowconf").sampler.steps == 256
  assert presets.preset("dream:sudoku:threshold").sampler.strategy.tau == 0.9
  lookum3 = presets.preset("llada:mbpp:lookum3").sampler
  assert lookum3.strategy.paths == 3 and lookum3.steps_per_block == 16
  assert presets.preset("llada:gsm8k:policy").policy_path.startswith("<set policy_path")


def test_every_preset_name_builds_a_valid_config():
  names = presets.preset_names()
  assert len(names) == len(set(names)) == 3 * 6 * len(presets.SAMPLERS)
  for name in names:
    model, benchmark, sampler = name.split(":")
    config = presets.preset(name)
    assert (config.benchmark, config.sampler_name) == (benchmark, sampler)
    assert config.model_name == presets.MODELS[model]["model_name"]
    assert config.run_name == f"{config.model_name}_{benchmark}_{sampler}"
    assert BenchmarkConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("name, message", [
    ("llada:gsm8k", "must look like model:benchmark:sampler"),
    ("llada:gsm8k:lookum9", "unknown preset sampler 'lookum9'.*valid: lowconf,"),
    ("gpt:gsm8k:lowconf", "unknown preset model 'gpt'"),
    ("llada:gsm9k:lowconf", "unknown preset benchmark 'gsm9k'"),
])
def test_bad_preset_names_list_the_valid_ones(name, message):
  with pytest.raises(ValueError, match=message):
    presets.preset(name)


def test_preset_flag_and_config_file_agree(tmp_path):
  config_file = tmp_path / "llada_gsm8k_lookum2.py"
  config_file.write_text("from lookum_jax.benchmarks.presets import preset\n\n\n"
                         "def get_config():\n  return preset('llada:gsm8k:lookum2')\n")
  overrides = ["--override", "model_path=/data/llada", "--override", "sampler.steps=64"]
  from_file = bench_config(build_parser().parse_args(
      ["bench", "--config", str(config_file), *overrides]))
  from_flag = bench_config(build_parser().parse_args(
      ["bench", "--preset", "llada:gsm8k:lookum2", *overrides]))
  assert from_file == from_flag and load_config(config_file) == presets.preset(
      "llada:gsm8k:lookum2")
  assert from_flag.sampler.steps == 64 and from_flag.fingerprint() == from_file.fingerprint()
  with pytest.raises(SystemExit):  # one of --config, --preset
    build_parser().parse_args(["bench", "--config", str(config_file), "--preset", "x:y:z"])


def test_config_round_trips_through_json_and_reads_the_flat_layout():
  config = presets.preset("dream:humaneval:policy", policy_path="/p", seed=3)
  as_json = json.loads(json.dumps(config.to_dict()))
  assert as_json["sampler"]["strategy"] == "policy"
  assert as_json["sampler"]["params"]["features"] == ["confidence"]  # a list in JSON
  assert BenchmarkConfig.from_dict(as_json) == config
  # The layout before the sampler was nested: its fields sat beside the others.
  flat = {"model_path": "/m", "benchmark": "gsm8k", "gen_length": 256, "block_length": 32,
          "steps": 128, "strategy": "lookum", "params": {"paths": 2, "pool_size": 5},
          "temperature": 0.0, "cfg_scale": 0.0, "logits_eos_inf": False,
          "confidence_eos_eot_inf": False, "cache": "none", "prompt_buckets": [256, 512]}
  assert BenchmarkConfig.from_dict(flat) == BenchmarkConfig(
      model_path="/m", prompt_buckets=(256, 512), sampler=SamplerConfig(
          gen_length=256, block_length=32, steps=128,
              strategy=parse_strategy("lookum", {"paths": 2, "pool_size": 5})))
  with pytest.raises(ValueError, match=r"unknown BenchmarkConfig field\(s\) \['stepz'\]"):
    BenchmarkConfig.from_dict({"stepz": 3})


def test_overrides_set_fields_sampler_params_and_options():
  config = apply_overrides(presets.preset("llada:humaneval:lookum2"), [
      "model_path=/data/llada", "sampler.steps=64", "sampler.params.paths=3",
      "sampler.params.verifier=confidence", "benchmark_options.timeout_s=5",
      "prompt_buckets=(128, 256)", "sampler.temperature=1", "data_path=123"])
  sampler = config.sampler
  assert config.model_path == "/data/llada" and sampler.steps == 64
  flat = sampler.strategy.to_dict()
  assert (flat["paths"], flat["pool_size"], flat["verifier"]) == (3, 5, "confidence")
  assert config.benchmark_options == {"timeout_s": 5}
  assert config.prompt_buckets == (128, 256) and sampler.temperature == 1.0
  assert isinstance(sampler.temperature, float) and config.data_path == "123"
  # Another strategy starts from its defaults; with a policy it needs the policy's path.
  switched = apply_overrides(config, ["sampler.strategy=threshold", "sampler.params.tau=0.8"])
  assert switched.sampler.strategy.name == "threshold" and switched.sampler.strategy.tau == 0.8
  assert switched.sampler.steps == 64
  policy = apply_overrides(config, ["sampler.strategy=policy", "policy_path=/p"])
  assert policy.needs_policy and policy.policy_path == "/p"


@pytest.mark.parametrize("override, message", [
    ("stepz=3", r"unknown config key 'stepz'.*valid keys of BenchmarkConfig: model_path"),
    ("steps=3", r"unknown config key 'steps'.*sampler\.<field>"),
    ("sampler.stepz=3", r"unknown sampler key in override 'sampler.stepz=3'; valid: "
                        r"sampler.block_length"),
    ("steps", r"not of the form key=value"),
    ("sampler.steps=lots", r"--override steps=lots: the sampler takes steps as int, got 'lots'"),
    ("sampler.steps=100", r"steps \(100\) must be a multiple of the number of blocks \(8"),
    ("benchmark=gsm9k", r"unknown benchmark 'gsm9k'"),
    ("benchmark_options.timeout=1", r"has no option\(s\) \['timeout'\]"),
    ("sampler.params.paths=0", r"lookum: paths must be >= 1"),
    ("sampler.params.paths=two", r"sampler.params paths=two: strategy 'lookum' takes paths as "
                                 r"int"),
    ("sampler.strategy=nope", r"unknown strategy 'nope'"),
    ("sampler.params.paths.x=1", r"--override sampler.params paths.x: parameter 'paths' of "
                                 r"strategy 'lookum' has no parameters of its own"),
    ("sampler.strategy=policy", r"strategy 'policy' needs policy_path"),
    ("prompt_buckets=(512, 256)", r"prompt_buckets must be increasing"),
    ("dtype=fp8", r"dtype must be one of"),
    ("batch_size=0", r"batch_size must be a positive int"),
])
def test_bad_overrides_name_the_fix(override, message):
  with pytest.raises(ValueError, match=message):
    apply_overrides(presets.preset("llada:humaneval:lookum2"), [override])


def test_fingerprint_tracks_outputs_not_batching():
  base = presets.preset("llada:gsm8k:lowconf")
  assert base.fingerprint() == base.replace(batch_size=32, mesh_model=8).fingerprint()
  assert base.fingerprint() != apply_overrides(base, ["sampler.steps=128"]).fingerprint()
  assert base.fingerprint() != apply_overrides(base, ["sampler.cache=dual"]).fingerprint()
  assert base.fingerprint() != base.replace(model_path="/other").fingerprint()
  with pytest.raises(ValueError, match="strategy 'policy' needs policy_path"):
    BenchmarkConfig(sampler=SamplerConfig(strategy=parse_strategy("policy")))
  with pytest.raises(ValueError, match="sampler must be a SamplerConfig, got dict"):
    BenchmarkConfig(sampler={"steps": 8})


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

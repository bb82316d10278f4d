"""The lm-eval-harness model `lookum`, offline: local YAML tasks on local JSON problems, run
through lm_eval's command line on the shipped toy model and checked against `lookum eval`."""

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lm_eval.api.registry import get_model

from lookum_jax.cli import main as lookum_main
from lookum_jax.integrations import lm_eval as lookum_lm_eval
from lookum_jax.integrations.toy_tasks import write_task
from lookum_jax.loading import resolve_path
from lookum_jax.parsing import parse_strategy

NUM_PROBLEMS = 12
POLICY_DIR = resolve_path("toy-sudoku") / "policy"

# Runs lm_eval's command line through our wrapper with every socket connection refused and
# counted, so the test shows the run needs no network at all.
_OFFLINE_RUN = textwrap.dedent("""
    import atexit, runpy, socket, sys
    attempts = []
    def refuse(*args, **kwargs):
      attempts.append(args[1:] if len(args) > 1 else args)
      raise OSError("network disabled in this test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    atexit.register(lambda: print(f"network attempts: {len(attempts)}", file=sys.stderr))
    sys.argv = ["lm_eval", *sys.argv[1:]]
    runpy.run_module("lookum_jax.integrations.lm_eval", run_name="__main__", alter_sys=True)
""")


def _run_lm_eval(tmp_path: Path, task_dir: Path, tasks: list[str], model_args: str) -> dict:
  out = tmp_path / "lm_eval_out"
  env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1",
         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
  run = subprocess.run(
      [sys.executable, "-c", _OFFLINE_RUN, "--model", "lookum", "--model_args", model_args,
       "--tasks", ",".join(tasks), "--include_path", str(task_dir), "--batch_size", "8",
       "--output_path", str(out), "--log_samples"],
      capture_output=True, text=True, env=env, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "network attempts: 0" in run.stderr
  ran = {"stderr": run.stderr}
  results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
  for task in tasks:
    prefix = f"samples_{task}_"  # then the time stamp (toy_sudoku_choice's start alike)
    path, = [p for p in out.rglob(f"{prefix}*.jsonl") if p.name[len(prefix)].isdigit()]
    samples = [json.loads(line) for line in path.open()]
    ran[task] = {"results": results[task],
                 "samples": sorted(samples, key=lambda s: s["doc_id"])}
  return ran


def _lookum_eval(tmp_path: Path, data: Path, *flags: str) -> dict:
  out = tmp_path / "lookum_eval.json"
  assert lookum_main(["eval", "--model", "toy-sudoku", "--data", str(data), "--batch-size", "8",
                      "--no-progress", "--out", str(out), *flags]) == 0
  return json.loads(out.read_text())


def _examples(n: int = NUM_PROBLEMS) -> list[dict]:
  lines = (resolve_path("toy-sudoku") / "heldout.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines[:n]]


def _problems_file(tmp_path: Path) -> Path:
  """The problems of the toy_sudoku task, for `lookum eval --data`."""
  path = tmp_path / "problems.jsonl"
  path.write_text("".join(json.dumps(ex) + "\n" for ex in _examples()))
  return path


def _corrupted(solution: str) -> str:
  return solution[1] + solution[0] + solution[2:]  # two cells of a row swapped


# A multiple-choice task (loglikelihood requests): each puzzle's solution against a corrupted
# copy; the model should prefer the solution.
_CHOICE_YAML = """\
task: toy_sudoku_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: prompt  # a feature name: the raw text (a template of digits would
doc_to_choice: choices  # be read as a choice index)
doc_to_target: 0
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
NUM_CHOICE_PROBLEMS = 8


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
  """Two local lm-eval tasks: the first held-out puzzles to solve (toy_sudoku, written by
  `write_task`) and to choose between solution and corruption (toy_sudoku_choice)."""
  directory = tmp_path_factory.mktemp("tasks")
  write_task(directory, "toy-sudoku", limit=NUM_PROBLEMS)
  data = directory / "choice.jsonl"
  data.write_text("".join(json.dumps({"prompt": ex["puzzle"], "choices": [
      ex["solution"], _corrupted(ex["solution"])]}) + "\n"
      for ex in _examples(NUM_CHOICE_PROBLEMS)))
  (directory / "choice.yaml").write_text(_CHOICE_YAML.format(data=json.dumps(str(data))))
  return directory


def test_importing_registers_the_lookum_model():
  assert get_model("lookum") is lookum_lm_eval.LookumLM


def test_the_task_is_local_yaml_and_json(task_dir):
  directory = task_dir
  text = (directory / "toy_sudoku.yaml").read_text()
  assert "dataset_path: json" in text and "output_type: generate_until" in text
  docs = [json.loads(line) for line in (directory / "toy_sudoku.jsonl").open()]
  assert [d["example"] for d in docs] == _examples()
  assert all(d["prompt"] == d["example"]["puzzle"] for d in docs)


def _request(*args, doc_id: int = 0):
  return types.SimpleNamespace(args=args, doc_id=doc_id)


@pytest.fixture(scope="module")
def toy_lm():
  return lookum_lm_eval.LookumLM(model="toy-sudoku", batch_size=4, mc_num=8, mc_batch_size=4,
                                 is_check_greedy=True)


def test_model_args_build_the_sampler():
  config = lookum_lm_eval.sampler_config_from_model_args(
      {"strategy": "threshold", "tau": 1}, None)
  assert (config.gen_length, config.block_length, config.steps) == (128, 128, 128)
  lm = lookum_lm_eval.LookumLM(model="toy-sudoku", strategy="lookum", paths=3, steps=8)
  assert (lm.config.gen_length, lm.config.block_length, lm.config.steps) == (16, 16, 8)
  assert lm.config == lookum_lm_eval.SamplerConfig(
      gen_length=16, block_length=16, steps=8, strategy=parse_strategy("lookum", {"paths": 3}))
  cached = lookum_lm_eval.sampler_config_from_model_args(
      {"strategy": "threshold", "cache": "dual", "gen_length": 32, "block_length": 8})
  assert (cached.cache.name, cached.block_length, cached.steps) == ("dual", 8, 32)
  with pytest.raises(ValueError, match="model_args tau=abc: strategy 'threshold' takes tau "
                     "as float"):
    lookum_lm_eval.sampler_config_from_model_args({"strategy": "threshold", "tau": "abc"})
  with pytest.raises(ValueError, match="model_args temperature=hot: the sampler takes "
                     "temperature as float"):
    lookum_lm_eval.sampler_config_from_model_args({"temperature": "hot"})
  with pytest.raises(ValueError, match="unknown parameter"):
    lookum_lm_eval.sampler_config_from_model_args({"strategy": "threshold", "taus": 0.9})
  with pytest.raises(ValueError, match="needs model=DIR"):
    lookum_lm_eval.LookumLM()
  with pytest.raises(ValueError, match="model_args strategy=policy needs policy=DIR"):
    lookum_lm_eval.LookumLM(model="toy-sudoku", strategy="policy")


def test_generate_until_cuts_at_the_stop_strings(toy_lm):
  puzzles = [ex["puzzle"] for ex in _examples(5)]
  full = toy_lm.generate_until([_request(p, {"until": []}, doc_id=i)
                                for i, p in enumerate(puzzles)], disable_tqdm=True)
  assert all(len(text) == 16 for text in full)
  cut = toy_lm.generate_until([_request(p, {"until": ["3", "xyz"]}, doc_id=i)
                               for i, p in enumerate(puzzles)], disable_tqdm=True)
  assert cut == [text.split("3")[0] for text in full]
  assert len(toy_lm.nfe) == 10 and set(toy_lm.nfe) == {16}
  # A row decodes the same alone as in its batch.
  alone = toy_lm.generate_until([_request(puzzles[3], {"until": []}, doc_id=3)],
                                disable_tqdm=True)
  assert alone == [full[3]]


def test_chat_template_and_rolling_loglikelihood(toy_lm):
  # The toy tokenizer has no chat template: a single user turn stays as it is.
  assert toy_lm.apply_chat_template([{"role": "user", "content": "0040"}]) == "0040"
  assert toy_lm.chat_template() == ""
  with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
    toy_lm.loglikelihood_rolling([_request("1234")])


def test_loglikelihood_of_one_token_is_exact(toy_lm):
  example = _examples(1)[0]
  (estimate, _), = toy_lm.loglikelihood([_request(example["puzzle"], example["solution"][0])],
                                        disable_tqdm=True)
  prefix = toy_lm.tokenizer(example["puzzle"])["input_ids"]
  target = toy_lm.tokenizer(example["solution"][0])["input_ids"]
  logits = toy_lm.model(jnp.asarray([prefix + [toy_lm.mask_token_id]]))
  exact = jax.nn.log_softmax(logits[0, -1])[target[0]]
  assert estimate == pytest.approx(float(exact), abs=1e-5)


def test_loglikelihood_prefers_solutions_and_is_reproducible(toy_lm):
  examples = _examples(8)
  requests = [_request(ex["puzzle"], answer) for ex in examples
              for answer in (ex["solution"], _corrupted(ex["solution"]))]
  first = toy_lm.loglikelihood(requests, disable_tqdm=True)
  assert toy_lm.loglikelihood(requests[::-1], disable_tqdm=True)[::-1] == first
  estimates = np.asarray([ll for ll, _ in first]).reshape(-1, 2)
  assert np.all(estimates < 0)
  assert np.mean(estimates[:, 0] > estimates[:, 1]) >= 0.75
  # is_greedy: one most-confident token per step reproduces the solution exactly when
  # low_confidence at one token per step (lookum eval's default here) solves the puzzle.
  greedy = [g for _, g in first[::2]]
  decoded = toy_lm.generate_until([_request(ex["puzzle"], {"until": []}, doc_id=i)
                                   for i, ex in enumerate(examples)], disable_tqdm=True)
  assert greedy == [text == ex["solution"] for text, ex in zip(decoded, examples, strict=True)]




def _choice_requests():
  return [_request(ex["puzzle"], answer) for ex in _examples(NUM_CHOICE_PROBLEMS)
          for answer in (ex["solution"], _corrupted(ex["solution"]))]


@pytest.mark.slow
def test_lm_eval_command_line_offline_matches_lookum_eval(task_dir, toy_lm, tmp_path):
  """One lm_eval run (both request types) against `lookum eval` on the same problems."""
  ran = _run_lm_eval(tmp_path, task_dir, ["toy_sudoku", "toy_sudoku_choice"],
                     "model=toy-sudoku,strategy=threshold,tau=0.9,mc_num=8,mc_batch_size=4")
  generated = ran["toy_sudoku"]
  record = _lookum_eval(tmp_path, _problems_file(tmp_path), "--strategy", "threshold",
                        "--param", "tau=0.9")
  assert record["n"] == NUM_PROBLEMS == len(generated["samples"])
  # The same responses, problem by problem, hence the same scores and NFE.
  assert [s["filtered_resps"][0] for s in generated["samples"]] == [
      r["response"] for r in record["records"]]
  assert [s["solved"] for s in generated["samples"]] == [
      float(r["correct"]) for r in record["records"]]
  assert generated["results"]["solved,none"] == pytest.approx(record["accuracy"])
  assert generated["results"]["exact_match,none"] == pytest.approx(record["accuracy"])
  assert f"mean NFE {record['mean_nfe']:.2f}" in ran["stderr"]
  # Loglikelihood: the same Monte-Carlo estimates as in process (seeded by the texts).
  chosen = ran["toy_sudoku_choice"]
  estimates = np.asarray([ll for ll, _ in toy_lm.loglikelihood(_choice_requests(),
                                                               disable_tqdm=True)])
  estimates = estimates.reshape(-1, 2)
  logged = np.asarray([[float(resp[0][0]) for resp in s["resps"]] for s in chosen["samples"]])
  np.testing.assert_allclose(logged, estimates, rtol=1e-5)
  assert chosen["results"]["acc,none"] == pytest.approx(
      np.mean(estimates[:, 0] > estimates[:, 1]))


def test_learned_policy_matches_lookum_eval(tmp_path):
  lm = lookum_lm_eval.LookumLM(model="toy-sudoku", policy=str(POLICY_DIR), strategy="policy",
                               mode="deterministic", batch_size=8)
  examples = _examples()
  texts = lm.generate_until([_request(ex["puzzle"], {"until": []}, doc_id=i)
                             for i, ex in enumerate(examples)], disable_tqdm=True)
  record = _lookum_eval(tmp_path, _problems_file(tmp_path), "--strategy", "policy",
                        "--policy", str(POLICY_DIR), "--param", "mode=deterministic")
  assert texts == [r["response"] for r in record["records"]]
  assert lm.nfe == [r["nfe"] for r in record["records"]]

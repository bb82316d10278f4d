"""A researcher's first day (issue 24): nothing lost, everything resumable, clear errors."""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import lookum_jax.toylab
from lookum_jax.cli import main
from lookum_jax.loading import resolve_path

SUDOKU = resolve_path("toy-sudoku")


@contextlib.contextmanager
def unwritable(folder: Path):
  """`folder` made unwritable: mode 555 for a user, `chattr +i` for root (who writes into a
  mode-555 folder anyway)."""
  if os.geteuid() != 0:
    folder.chmod(0o555)
    try:
      yield folder
    finally:
      folder.chmod(0o755)
    return
  if shutil.which("chattr") is None or subprocess.run(
      ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
    pytest.skip("running as root where chattr +i is unavailable: no folder is unwritable")
  try:
    yield folder
  finally:
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def _no_model(*args, **kwargs):
  raise AssertionError("a model was loaded before the output folder was checked")


@pytest.mark.parametrize("command", ["eval", "demo"])
def test_an_unwritable_output_folder_fails_before_any_model_loads(
    command, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(lookum_jax.toylab, "open_task_model", _no_model)
  folder = tmp_path / "results"
  folder.mkdir()
  flag, value = (("--out", str(folder / "x.json")) if command == "eval"
                 else ("--out-dir", str(folder)))
  with unwritable(folder):
    assert main([command, "--no-progress", flag, value]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert err.startswith(f"lookum {command}: error: {flag} {value}: cannot write into {folder}")
  assert list(folder.iterdir()) == []  # the probe left nothing behind


# ---- corrupt checkpoints: one line naming the file, exit 2 -------------------------------

def _largest_data_file(params: Path) -> Path:
  return max((p for p in params.rglob("*") if p.is_file() and "/d/" in p.as_posix()),
             key=lambda p: p.stat().st_size)


def _truncate(path: Path, keep: float = 0.5) -> Path:
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])
  return path


CORRUPTIONS = {
    "model params data": lambda d: _truncate(_largest_data_file(d / "params")),
    "model _METADATA": lambda d: _truncate(d / "params" / "_METADATA"),
    "model config.json": lambda d: _truncate(d / "config.json"),
    "model manifest": lambda d: _truncate(d / "params" / "manifest.ocdbt", 0.3),
    "policy params data": lambda d: _truncate(_largest_data_file(d / "policy" / "params")),
    "policy _METADATA": lambda d: _truncate(d / "policy" / "params" / "_METADATA"),
    "policy_config.json": lambda d: (d / "policy" / "policy_config.json").write_text("")
    or d / "policy" / "policy_config.json",
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(case, tmp_path, capsys):
  model = tmp_path / "toy"
  shutil.copytree(SUDOKU, model)
  bad = CORRUPTIONS[case](model)
  argv = ["eval", "--model", str(model), "--limit", "1", "--no-progress"]
  if case.startswith("policy"):
    argv += ["--strategy", "policy", "--policy", str(model / "policy")]
  assert main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  expected = bad.parent if case == "model manifest" else bad
  assert err.startswith(f"lookum eval: error: {expected.absolute()}"), err
  assert "re-copy it" in err


def test_a_truncated_hugging_face_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
  from helpers import write_hf_checkpoint

  from lookum_jax.model import tiny

  hf_dir = tmp_path / "hf"
  write_hf_checkpoint(hf_dir, tiny(n_layers=1))
  shard = _truncate(next(hf_dir.glob("*.safetensors")))
  assert main(["generate", "--model", str(hf_dir), "--prompt", "12", "--gen-length", "8"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert err.startswith("lookum generate: error: "), err
  assert f"{shard} is truncated or corrupt" in err and "re-export it" in err


# ---- eval resumes after Ctrl-C --------------------------------------------------------------

def _interrupt_after(monkeypatch, batches: int):
  """Makes the (batches + 1)-th decoded batch raise KeyboardInterrupt, like Ctrl-C."""
  import lookum_jax.evaluation

  real, calls = lookum_jax.evaluation.decode_and_score, []

  def decode_and_score(*args, **kwargs):
    calls.append(1)
    if len(calls) > batches:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  monkeypatch.setattr(lookum_jax.evaluation, "decode_and_score", decode_and_score)
  return calls


def test_eval_resumes_after_ctrl_c_and_refuses_a_changed_sampler(tmp_path, monkeypatch, capsys):
  import json

  argv = ["eval", "--limit", "6", "--batch-size", "2", "--no-progress"]
  assert main([*argv, "--out", str(tmp_path / "fresh.json")]) == 0
  fresh = json.loads((tmp_path / "fresh.json").read_text())
  assert not (tmp_path / "fresh.records.jsonl").exists()  # the journal goes once out is written
  out, journal = tmp_path / "x.json", tmp_path / "x.records.jsonl"
  capsys.readouterr()

  with monkeypatch.context() as m:
    _interrupt_after(m, 2)
    assert main([*argv, "--out", str(out)]) == 130
  err = capsys.readouterr().err.strip()
  assert err == (f"interrupted: 4 of 6 problems saved in {journal}; rerun the same command "
                 "to resume.")
  assert not out.exists() and len(journal.read_text().splitlines()) == 1 + 4

  # A changed sampler never mixes with the saved records.
  assert main([*argv, "--out", str(out), "--steps", "8"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"lookum eval: error: {journal} holds the records of a different run "
                        "(sampler changed)")

  with monkeypatch.context() as m:
    calls = _interrupt_after(m, 99)
    assert main([*argv, "--out", str(out)]) == 0
  assert len(calls) == 1  # only the last two problems were decoded
  assert capsys.readouterr().out.startswith(f"resuming: 4 of 6 problems already done ({journal})")
  resumed = json.loads(out.read_text())
  for key in ("n", "correct", "accuracy", "mean_nfe", "token_error_rate", "records"):
    assert resumed[key] == fresh[key], key
  assert not journal.exists()


# ---- generate takes a toy model's lengths --------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--gen-length", "16"]], ids=["task.json", "gen only"])
def test_generate_takes_the_toy_models_lengths(extra, capsys):
  puzzle = "0040032000102100"
  assert main(["generate", "--model", "toy-sudoku", "--prompt", puzzle, *extra]) == 0
  response, _, stats, _ = capsys.readouterr().out.split("\n", 3)
  assert len(response) == 16 and set(response) <= set("1234"), response
  assert all(r == p for r, p in zip(response, puzzle, strict=True) if p != "0")  # the givens
  assert "tokens: 16 " in stats


# ---- smaller things ------------------------------------------------------------------------

def test_lookum_help_imports_no_jax():
  """`lookum --help` is fast (0.2 s here, from 2.7 s) because it loads none of these."""
  import sys

  code = ("import sys; from lookum_jax.cli import main\n"
          "try:\n  main(['--help'])\nexcept SystemExit:\n  pass\n"
          "print(sorted(m for m in ('jax', 'flax', 'orbax', 'transformers', 'numpy') "
          "if m in sys.modules))")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=True)
  assert "generate a response to one prompt" in run.stdout
  assert run.stdout.strip().splitlines()[-1] == "[]"


def test_a_character_outside_the_toy_alphabet_is_refused_by_name(capsys):
  assert main(["generate", "--model", "toy-sudoku", "--prompt", "00400320~0102100"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("lookum generate: error: text '00400320~0102100' has characters "
                        "outside the tokenizer's alphabet: ['~'] (first at position 8)")
  assert len(err.splitlines()) == 1


def test_the_demo_prints_each_row_once(tmp_path, monkeypatch, capsys):
  from test_readme import _no_decoding

  monkeypatch.setattr("lookum_jax.decoding.generate", _no_decoding)
  assert main(["demo", "--limit", "2", "--batch-size", "2", "--no-progress",
               "--out-dir", str(tmp_path)]) == 0
  lines = capsys.readouterr().out.splitlines()
  rows = [line for line in lines if line.startswith(("low_confidence", "lookum", "threshold"))]
  assert len(rows) == len(set(rows)) == 7
  assert sum(line.startswith("sampler ") for line in lines) == 1  # one header
  import json

  results = json.loads((tmp_path / "results.json").read_text())
  assert {r["provenance"]["limit"] for r in results} == {2}  # the demo's records say it too


# ---- provenance, labels, summarize reads eval records --------------------------------------

def _config(strategy: str = "low_confidence", steps: int = 16, **fields):
  """A SamplerConfig for labels (the one place this file builds strategies)."""
  from lookum_jax.parsing import parse_strategy
  from lookum_jax.sampling import SamplerConfig

  params = {k: fields.pop(k) for k in ("tau", "gamma", "paths") if k in fields}
  return SamplerConfig(gen_length=16, block_length=16, steps=steps,
                       strategy=parse_strategy(strategy, params), **fields)


def test_sampler_labels_are_short_unique_and_say_what_matters():
  from lookum_jax.cli.evaluate import demo_samplers
  from lookum_jax.cli.provenance import label_for

  assert label_for(_config("threshold", tau=0.9, cache="dual")) == "threshold tau=0.9 cache=dual"
  assert label_for(_config("threshold", tau=0.9, cache="dual", cache_refresh=1)) == (
      "threshold tau=0.9 cache=dual cache_refresh=1")
  assert label_for(_config(steps=8)) == "low_confidence steps=8"
  assert label_for(_config("lookum", steps=8, paths=3)) == "lookum paths=3 steps=8"
  labels = [label_for(config) for _, config in demo_samplers(16, 16)]
  assert len(set(labels)) == len(labels) and max(map(len, labels)) <= 80, labels


def test_eval_record_has_provenance_and_summarize_reads_it(tmp_path, capsys):
  import json
  import re

  import lookum_jax

  out = tmp_path / "x.json"
  assert main(["eval", "--limit", "2", "--batch-size", "2", "--seed", "3", "--no-progress",
               "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  prov = record["provenance"]
  assert prov["model"] == str(SUDOKU.absolute())
  assert prov["data"] == str((SUDOKU / "heldout.jsonl").absolute())
  assert (prov["seed"], prov["limit"]) == (3, 2)
  assert prov["lookum_jax_version"] == lookum_jax.__version__
  assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", prov["git_commit"])
  capsys.readouterr()
  assert main(["summarize", str(out), "--plots", str(tmp_path / "plots")]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("sampler") and lines[2].startswith("low_confidence ")
  assert f"{record['accuracy']:.3f}" in lines[2]
  assert (tmp_path / "plots" / "eval_accuracy_vs_nfe.pdf").stat().st_size > 1000


# ---- plots fit for a paper ---------------------------------------------------------------

def test_the_accuracy_vs_nfe_plot_is_fit_for_a_paper(tmp_path):
  import itertools

  from PIL import Image

  from lookum_jax.cli.evaluate import demo_samplers
  from lookum_jax.evaluation import EvalResult, sampler_summary, wilson_interval
  from lookum_jax.plotting import draw_accuracy_vs_nfe, plot_accuracy_vs_nfe

  # The README's demo table: three points at NFE 8, two at 3.1, two lookum families.
  table = [(0.670, 16), (0.465, 8), (0.165, 4), (0.450, 8), (0.470, 8), (0.140, 16),
           (0.590, 6.0), (0.200, 3.1), (0.560, 5.9), (0.235, 3.1), (0.500, 12.5), (0.365, 15),
           (0.350, 9.4), (0.665, 15.7), (0.250, 8), (0.050, 4)]  # klass, prophet, pc_sampler, dus
  results = []
  for (label, config), (accuracy, nfe) in zip(demo_samplers(16, 16), table, strict=True):
    correct = round(accuracy * 200)
    results.append(EvalResult(
        task="sudoku", label=label, sampler=sampler_summary(config), n=200, correct=correct,
        accuracy=correct / 200, ci95=wilson_interval(correct, 200), mean_nfe=nfe,
        mean_steps=nfe, token_error_rate=None, wall_time_s=1.0, compile_time_s=0.0))
  fig, _ = draw_accuracy_vs_nfe(results, "toy-sudoku")
  ax = fig.axes[0]
  renderer = fig.canvas.get_renderer()
  legend = ax.get_legend()
  assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
  names = [t.get_text() for t in legend.get_texts()]
  assert max(map(len, names)) <= 30 and "=" not in " ".join(names).replace("K=2", ""), names
  notes = [t for t in ax.texts if t.get_visible()]
  assert len(notes) >= 8
  for a, b in itertools.combinations(notes, 2):
    assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), (
        a.get_text(), b.get_text())
  assert min(t.get_fontsize() for t in notes) >= 7.5
  ticks = ax.get_xticklabels(minor=True)
  assert all(not t.get_text() for t in ticks)  # no minor tick labels
  assert all(t.get_fontsize() >= 9 for t in ax.get_xticklabels())
  assert "95% Wilson interval" in ax.get_ylabel()
  plot_accuracy_vs_nfe(results, tmp_path / "plot.png")
  with Image.open(tmp_path / "plot.png") as image:
    assert round(image.info["dpi"][0]) == 200
  assert (tmp_path / "plot.pdf").read_bytes().startswith(b"%PDF")


# ---- a KV cache on a toy model that it ruins ------------------------------------------------

class _Stop(Exception):
  pass


def _stop(*args, **kwargs):
  raise _Stop


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_cache_on_a_toy_model_that_it_ruins_warns_once(command, monkeypatch, capsys):
  import lookum_jax.evaluation
  import lookum_jax.sampling

  monkeypatch.setattr(lookum_jax.evaluation, "evaluate", _stop)  # the warning comes first
  monkeypatch.setattr(lookum_jax.sampling, "generate", _stop)
  argv = [command, "--model", "toy-sudoku", "--strategy", "threshold", "--tau", "0.9"]
  argv += ["--limit", "1", "--no-progress"] if command == "eval" else ["--prompt", "0" * 16]
  for extra, warned in ((["--cache", "dual"], True), (["--cache", "dual", "--cache-refresh",
                                                        "1"], False), ([], False)):
    with pytest.raises(_Stop):
      main([*argv, *extra])
    err = capsys.readouterr().err
    assert err.count("warning:") == int(warned), (extra, err)
    if warned:
      assert err.strip() == (
          "warning: toy-sudoku loses accuracy under a KV cache: threshold tau=0.9 solves "
          "0.590 of 200 problems uncached and 0.095 with --cache dual (its task.json); "
          "--cache-refresh 1 refreshes the cache every step and restores it (0.590).")


def test_results_without_sampler_settings_are_a_family_each():
  """`lookum summarize`'s bench plots know only each run's sampler name: never one line
  through different samplers."""
  from lookum_jax.evaluation import EvalResult
  from lookum_jax.plotting import display_names, sampler_families

  results = [EvalResult(task="gsm8k", label=name, sampler={}, n=4, correct=2, accuracy=0.5,
                        ci95=(0.1, 0.9), mean_nfe=nfe, mean_steps=nfe, token_error_rate=None,
                        wall_time_s=0.0, compile_time_s=0.0)
             for name, nfe in (("lowconf", 256), ("lookum2", 300), ("threshold", 90))]
  families = sampler_families(results)
  assert display_names(families, results) == ["lowconf", "lookum2", "threshold"]

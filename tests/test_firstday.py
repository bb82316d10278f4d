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
  assert err.startswith("lookum generate: error: '00400320~0102100': '~' (first at position 8) "
                        "not in the tokenizer's alphabet")
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

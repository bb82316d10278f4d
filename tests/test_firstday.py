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

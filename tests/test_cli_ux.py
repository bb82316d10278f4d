"""What a user of the command line sees: clear errors for bad input, help text, quiet
imports, and the accuracy-vs-NFE plot's sampler families."""

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

import lookum_jax.evaluation
import lookum_jax.toylab
from lookum_jax.cli import build_parser, main
from lookum_jax.cli.evaluate import demo_samplers
from lookum_jax.evaluation import EvalResult, sampler_summary, wilson_interval
from lookum_jax.parsing import parse_strategy
from lookum_jax.plotting import family_styles, plot_accuracy_vs_nfe, sampler_families
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.sampling.strategies import Threshold


def _lookum(**fields):
  """The one place this file builds a LookUM value (from its flat parameters)."""
  return LookUM.from_params(fields)


def _subcommands(parser=None, prefix=()):
  """Every command line a user can ask `--help` of: `("eval",)`, ..., `("train", "mdm")`."""
  parser = parser or build_parser()
  found = []
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for name, sub in action.choices.items():
        found.append((*prefix, name))
        found += _subcommands(sub, (*prefix, name))
  return found


def test_the_command_list():
  assert {" ".join(c) for c in _subcommands()} == {
      "generate", "eval", "demo", "convert", "bench", "summarize", "train", "train mdm",
      "train policy"}


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    main([*command, "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert " ".join(out.split()).startswith(f"usage: lookum {' '.join(command)}")
  assert "%%" not in out


def test_eval_help_shows_one_percent_sign(capsys):
  with pytest.raises(SystemExit):
    main(["eval", "--help"])
  assert "Accuracy (95% Wilson interval)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("param,expected", [
    ("tau=abc", "--param tau=abc: strategy 'threshold' takes tau as float, got 'abc'."),
    ("tau=[1]", "--param tau=[1]: strategy 'threshold' takes tau as float, got [1]."),
])
def test_param_of_the_wrong_type_is_a_clear_error(param, expected, capsys):
  assert main(["eval", "--limit", "2", "--strategy", "threshold", "--param", param,
               "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert err.strip() == f"lookum eval: error: {expected}"


def test_strategy_params_are_converted_to_their_types():
  assert parse_strategy("threshold", {"tau": 1}) == Threshold(tau=1.0)
  assert isinstance(parse_strategy("threshold", {"tau": 1}).tau, float)
  assert parse_strategy("threshold", {"tau": "0.8"}) == Threshold(tau=0.8)  # lm-eval's text
  assert parse_strategy("lookum", {"paths": 3, "verifier": "margin"}) == _lookum(
      paths=3, verifier="margin")
  with pytest.raises(ValueError, match=r"takes paths as int, got 2\.5"):
    parse_strategy("lookum", {"paths": 2.5})
  with pytest.raises(ValueError, match="takes sample_tokens as bool"):
    parse_strategy("lookum", {"sample_tokens": "maybe"})
  with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['pathz'\] for strategy "
                     r"'lookum'; valid parameters: base, branch_every"):
    parse_strategy("lookum", {"pathz": 2})
  with pytest.raises(ValueError,
                     match=r"unknown strategy 'oracle'; choose one of: (\w+, )*entropy,"):
    parse_strategy("oracle", {"x": 1})


def _no_evaluation(*args, **kwargs):
  raise AssertionError("the evaluation ran before --out was checked")


def test_out_into_a_missing_folder_creates_it(tmp_path):
  out = tmp_path / "new" / "sub" / "record.json"
  assert main(["eval", "--limit", "2", "--batch-size", "2", "--no-progress",
               "--out", str(out)]) == 0
  assert json.loads(out.read_text())["n"] == 2


@pytest.mark.parametrize("where", ["directory", "below_a_file"])
def test_bad_out_fails_before_the_evaluation(where, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(lookum_jax.evaluation, "evaluate", _no_evaluation)
  monkeypatch.setattr(lookum_jax.toylab, "open_task_model", _no_evaluation)
  if where == "directory":
    out, message = tmp_path, "is a directory"
  else:
    (tmp_path / "file.txt").write_text("x")
    out, message = tmp_path / "file.txt" / "record.json", "cannot create its folder"
  assert main(["eval", "--no-progress", "--out", str(out)]) == 2
  assert message in capsys.readouterr().err


def test_bad_demo_out_dir_fails_before_the_samplers_run(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(lookum_jax.toylab, "open_task_model", _no_evaluation)
  (tmp_path / "file.txt").write_text("x")
  assert main(["demo", "--no-progress", "--out-dir", str(tmp_path / "file.txt" / "d")]) == 2
  assert "--out-dir" in capsys.readouterr().err


# Runs Python as if PyTorch were not installed (transformers looks it up with find_spec).
_WITHOUT_TORCH = textwrap.dedent("""
    import importlib.util, sys
    _find_spec = importlib.util.find_spec
    def find_spec(name, package=None):
      return None if name.split(".")[0] == "torch" else _find_spec(name, package)
    importlib.util.find_spec = find_spec
    class _NoTorch:
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
          raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, _NoTorch())
""")


def _stderr_without_torch(code: str) -> str:
  run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH + code], capture_output=True,
                       text=True, timeout=120, check=True)
  return run.stderr


def test_tokenizers_load_without_the_pytorch_notice():
  # The control: transformers itself prints the notice when PyTorch is missing.
  assert "PyTorch was not found" in _stderr_without_torch("import transformers")
  err = _stderr_without_torch(textwrap.dedent("""
      import lookum_jax as lj
      from lookum_jax.tasks import build_tokenizer
      tok = lj.load_tokenizer("toy-sudoku")
      assert build_tokenizer().encode("12") == tok.encode("12")
      import transformers  # already imported: no notice now either
  """))
  assert "PyTorch was not found" not in err


def test_task_tokenizer_loads_without_the_model_type_warning():
  # The control: transformers warns that it does not know the sibling config's "llada".
  load = textwrap.dedent("""
      from lookum_jax.loading import resolve_path
      from lookum_jax.tasks import load_tokenizer
      import transformers
      directory = resolve_path("toy-chain")
      {}
  """)
  raw = "transformers.AutoTokenizer.from_pretrained(str(directory))"
  assert "model of type `llada`" in _stderr_without_torch(load.format(raw))
  assert "model of type" not in _stderr_without_torch(load.format("load_tokenizer(directory)"))


def _result(label: str, config: SamplerConfig, accuracy: float, nfe: float) -> EvalResult:
  n = 50
  correct = round(accuracy * n)
  return EvalResult(task="sudoku", label=label, sampler=sampler_summary(config), n=n,
                    correct=correct, accuracy=correct / n, ci95=wilson_interval(correct, n),
                    mean_nfe=nfe, mean_steps=nfe, token_error_rate=None, wall_time_s=1.0,
                    compile_time_s=0.0)


def test_plot_draws_one_line_per_sampler_family(tmp_path):
  import policy_rl  # noqa: F401  (registers the policy strategy)

  line_up = demo_samplers(16, 16)
  results = [_result(label, config, 0.3 + 0.02 * i, config.steps - 0.5 * i)
             for i, (label, config) in enumerate(line_up)]
  base = SamplerConfig(gen_length=16, block_length=16, steps=16)
  for alpha, nfe in ((0.5, 9.0), (2.0, 6.0)):  # two policies trained with different alpha
    results.append(_result(f"policy alpha={alpha}", base.replace(
        strategy=parse_strategy("policy", {"mode": "deterministic"})), 0.5, nfe))
  families = plot_accuracy_vs_nfe(results, tmp_path / "plot.png")
  assert (tmp_path / "plot.png").stat().st_size > 1000
  by_name = {f.name: [results[i].label for i in f.members] for f in families}
  lookum = sorted(name for name in by_name if name.startswith("lookum"))
  assert len(lookum) == 2 and all("verifier_scope=" in name for name in lookum)
  assert sorted(label for name in lookum for label in by_name.pop(name)) == [
      "lookum K=2 2/step", "lookum K=2 2/step paper"]
  assert by_name == {
      "low_confidence": ["low_confidence 4/step", "low_confidence 2/step",
                         "low_confidence 1/step"],  # in order of NFE
      "margin": ["margin 2/step"],
      "entropy": ["entropy 2/step"],
      "random": ["random 1/step"],
      "threshold": ["threshold tau=0.7", "threshold tau=0.9"],
      "entropy_bounded": ["entropy_bounded g=1", "entropy_bounded g=0.1"],
      "policy": ["policy alpha=2.0", "policy alpha=0.5"],
      "klass": ["klass conf=0.6 kl=0.015"],
      "prophet": ["prophet 1/step"],
      "pc_sampler": ["pc_sampler 2/step"],
      "dus": ["dus base=2"],
  }


def test_a_lookum_k_sweep_is_one_family():
  results = [_result(f"lookum K={k}", SamplerConfig(
      gen_length=16, block_length=16, steps=8, strategy=parse_strategy("lookum", {"paths": k})),
      0.4, 8.0 * k) for k in (2, 3, 4)]
  assert [f.name for f in sampler_families(results)] == ["lookum"]


def test_pc_sampler_lines_are_one_per_decay():
  results = [_result(f"pc_sampler decay={d} {k}/step", SamplerConfig(
      gen_length=16, block_length=16, steps=16 // k,
      strategy=parse_strategy("pc_sampler", {"decay": d})), 0.4, 16.0 / k)
      for d in (0.0, 0.25) for k in (1, 2)]
  assert [len(f.members) for f in sampler_families(results)] == [2, 2]


def test_a_dus_block_sweep_is_one_family():
  results = [_result(f"dus block={b}", SamplerConfig(
      gen_length=32, block_length=b, steps=32, strategy=parse_strategy("dus", {})),
      0.4, 32 // b * 4.0) for b in (32, 16, 8)]
  assert [f.name for f in sampler_families(results)] == ["dus"]


@pytest.mark.parametrize("count", [1, 9, 13, 20])
def test_family_styles_are_distinct(count):
  styles = family_styles(count)
  assert len(set(styles)) == count
  assert len({colour for colour, _ in styles}) == count
  assert len({marker for _, marker in styles}) == min(count, 12)

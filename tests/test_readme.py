"""Every command in README.md's code blocks runs, at a reduced size where it must, so the
README cannot drift from the code. README.md is parsed afresh each run; the table below only
says how to shrink a command, or why one cannot run here (weights, accelerators)."""

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from lookum_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
PUZZLE = "0040032000102100"

# (pattern searched in the command, what to do): the first match wins. "skip" carries the
# reason; "args" are appended; "sub" replaces (old, new) pairs in the command's words.
RULES = [
    (r"^pip install", {"skip": "installs the package: the tests run from the checkout"}),
    (r"^pytest", {"skip": "the test suite itself"}),
    (r"^lookum convert", {"skip": "needs LLaDA weights (Hugging Face safetensors)"}),
    (r"^lookum bench", {"skip": "needs converted LLaDA weights and a benchmark data file"}),
    (r"^lookum summarize results/benchmarks",
     {"skip": "reads lookum bench results, which need LLaDA weights"}),
    (r"--model DIR --data", {"skip": "placeholders: no 6x6 Sudoku model or data is shipped"}),
    (r"model=/data/", {"skip": "needs LLaDA weights and an accelerator"}),
    (r"integrations\.lm_eval --model lookum",
     {"skip": "lm-eval alone starts in 15 s; this command is run by tests/test_lm_eval.py::"
              "test_lm_eval_command_line_offline_matches_lookum_eval"}),
    # The demo compiles 13 samplers (100 s on 2 cores): run it with decoding stubbed, as
    # tests/test_toylab.py does, so its flags, outputs and table are still checked.
    (r"^lookum demo", {"args": ["--limit", "4", "--batch-size", "4", "--no-progress"],
                       "stub_decoding": True}),
    (r"^lookum generate --model DIR", {"sub": [("DIR", "toy-sudoku"), ("...", PUZZLE)]}),
    (r"^lookum eval", {"args": ["--limit", "4", "--batch-size", "4", "--no-progress"]}),
    # Two training steps still cost 25 s (mdm) and 70 s (policy) of compiling here; the
    # train command line runs, on small configs, in the tests named.
    (r"^lookum train mdm", {"skip": "25 s even at 2 steps; run by tests/test_train_mdm.py "
                                    "(main(['train', 'mdm', ...]))"}),
    (r"^lookum train policy", {"skip": "70 s even at 2 steps; run by tests/test_policy_rl.py "
                                       "(main(['train', 'policy', ...]))"}),
    (r"integrations\.toy_tasks", {"sub": [("200", "4")]}),
    (r"experiments/bench_memory\.py",
     {"skip": "AOT-compiles LLaDA-8B programs (minutes each on 2 cores); its code paths run in "
              "tests/test_sharded_decoding.py and tests/test_grpo_chunks.py"}),
    (r"experiments/bench_peer\.py",
     {"skip": "a benchmark of minutes that needs a Fast-dLLM checkout (--fastdllm-dir)"}),
]


def _no_decoding(model, ids, config, key, mask=None, *, targets=None):
  """`generate`'s stand-in: every response all EOS after `steps` steps, compiling nothing
  (shared by the tests that run the demo)."""
  import numpy as np

  import lookum_jax as lj

  del key, mask, targets
  eos = np.full((ids.shape[0], config.gen_length), model.config.eos_token_id, np.int32)
  count = np.full((ids.shape[0],), config.steps)
  return lj.GenerationResult(tokens=np.concatenate([ids, eos], 1), nfe=count,
                             num_steps=count, unmask_order=None, forward_tokens=count)


def readme_blocks() -> list[tuple[str, str]]:
  """(language, text) of each fenced code block of README.md."""
  return re.findall(r"^```(\w*)\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def readme_commands() -> list[list[str]]:
  """The words of each shell command in README.md's bash blocks (continuations joined,
  comments dropped, `a && b` split)."""
  commands = []
  for language, text in readme_blocks():
    if language not in ("bash", "sh", "shell"):
      continue
    for line in text.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      while words:
        cut = words.index("&&") if "&&" in words else len(words)
        commands.append(words[:cut])
        words = words[cut + 1:]
  return commands


def rule_for(words: list[str]) -> tuple[str, dict]:
  text = " ".join(words)
  for pattern, rule in RULES:
    if re.search(pattern, text):
      return pattern, rule
  return "", {}


def _ids(commands):
  return [" ".join(c)[:70] for c in commands]


@pytest.fixture
def in_scratch(tmp_path, monkeypatch):
  """A scratch working directory that sees the checkout's package and configs, so relative
  paths in the README resolve and its outputs land in tmp_path."""
  for name in ("lookum_jax", "configs"):
    (tmp_path / name).symlink_to(ROOT / name)
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize("words", readme_commands(), ids=_ids(readme_commands()))
def test_readme_command_runs(words, in_scratch, monkeypatch):
  _, rule = rule_for(words)
  if "skip" in rule:  # needs weights, an accelerator or a peer checkout: RULES says which
    pytest.skip(rule["skip"])
  for old, new in rule.get("sub", []):
    words = [new if w == old else w for w in words]
  words = [*words, *rule.get("args", [])]
  if rule.get("stub_decoding"):
    monkeypatch.setattr("lookum_jax.decoding.generate", _no_decoding)
  while "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
    name, value = words.pop(0).split("=", 1)
    monkeypatch.setenv(name, value)
  if words[0] == "lookum":
    assert main(words[1:]) == 0, words
  elif words[:2] == ["python", "-m"]:
    monkeypatch.setattr(sys, "argv", [words[2], *words[3:]])
    with pytest.raises(SystemExit) as exit_info:
      runpy.run_module(words[2], run_name="__main__", alter_sys=True)
    assert exit_info.value.code in (0, None), words
  else:
    raise AssertionError(f"README command of an unknown kind: {words}; add a RULES entry")


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(readme_blocks())
                                   if lang == "python"])
def test_readme_python_block_runs(index, in_scratch, capsys):
  exec(compile(readme_blocks()[index][1], f"README.md python block {index}", "exec"), {})
  assert capsys.readouterr().out.strip()


def test_every_rule_matches_a_readme_command():
  used = {rule_for(words)[0] for words in readme_commands()}
  assert [pattern for pattern, _ in RULES if pattern not in used] == []

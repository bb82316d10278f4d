"""Benchmark scorers on known right and wrong answers, data loading errors, the code sandbox."""

import json
import time

import pytest

from lookum_jax.benchmarks import get_benchmark, run_program, run_programs
from lookum_jax.benchmarks.answers import (
    extract_gsm8k_answer,
    gsm8k_gold_answer,
    last_boxed,
    math_answers_equal,
    normalize_math_answer,
)
from lookum_jax.benchmarks.coding import extract_code


def write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


# ---------------------------------------------------------------- GSM8K

GSM_PROBLEM = {"question": "Tom has 1,200 apples and buys 34 more. How many?",
               "answer": "He has 1200 + 34 = <<1200+34=1234>>1234.\n#### 1,234"}


def test_gsm8k_gold_answer():
  assert gsm8k_gold_answer(GSM_PROBLEM["answer"]) == "1234"
  assert gsm8k_gold_answer("#### -3.50") == "-3.5"
  with pytest.raises(ValueError, match="####"):
    gsm8k_gold_answer("the answer is 4")


@pytest.mark.parametrize("response", [
    "<reasoning>1200 + 34 = 1234</reasoning>\n<answer>\n\\boxed{1234}\n</answer>",
    "So the total is \\boxed{1,234}.",
    "Total: 1234 apples.\n#### 1234",
    "The answer is $1,234.00.",
    "He ends with \\boxed{\\$1234} apples",
    "First 12 + 3, then the final count is 1234",  # last number
    "<answer>1234 apples</answer>",
])
def test_gsm8k_right_answers(response):
  score = get_benchmark("gsm8k").score(GSM_PROBLEM, response)
  assert score.correct and score.score == 1.0 and score.extracted == "1234"


@pytest.mark.parametrize("response, extracted", [
    ("\\boxed{1233}", "1233"),
    ("I think it is 1234, no wait: \\boxed{1334}", "1334"),  # the boxed answer wins
    ("I cannot solve this.", None),
    ("\\boxed{", None),
])
def test_gsm8k_wrong_answers(response, extracted):
  score = get_benchmark("gsm8k").score(GSM_PROBLEM, response)
  assert not score.correct and score.score == 0.0 and score.extracted == extracted


def test_gsm8k_prompt_styles():
  d1 = get_benchmark("gsm8k")
  assert "\\boxed{}" in d1.prompt(GSM_PROBLEM) and d1.prompt(GSM_PROBLEM).endswith("How many?")
  assert d1.assistant_prefix(GSM_PROBLEM) == "<reasoning>"
  boxed = get_benchmark("gsm8k", prompt_style="boxed")
  assert boxed.prompt(GSM_PROBLEM).endswith(
      "Please reason step by step, and put your final answer within \\boxed{}.")
  assert boxed.assistant_prefix(GSM_PROBLEM) == ""
  custom = get_benchmark("gsm8k", prompt_template="Q: {question}\nA:")
  assert custom.prompt(GSM_PROBLEM) == f"Q: {GSM_PROBLEM['question']}\nA:"
  assert extract_gsm8k_answer("no digits here") is None


# ---------------------------------------------------------------- MATH500

@pytest.mark.parametrize("response, gold", [
    ("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\dfrac12}", "\\frac{1}{2}"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{1/2}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"),  # nested braces, \sqrt3
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{10\\%}", "10"),
    ("\\boxed{5\\text{ cm}}", "5"),
    ("\\boxed{x = 4}", "4"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{5.0}", "5"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{3\\!\\cdot\\!2}", "3\\cdot2"),
    ("<answer>\n\\boxed{7}\n</answer>", "7"),
    ("Therefore the answer is $12$.", "12"),
])
def test_math_right_answers(response, gold):
  score = get_benchmark("math500").score({"problem": "p", "answer": gold}, response)
  assert score.correct, (response, gold, score.extracted, normalize_math_answer(score.extracted))


@pytest.mark.parametrize("response, gold", [
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}"),
    ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{-5}", "5"),
    ("the answer is unclear \\boxed{", "5"),  # an unclosed box extracts nothing
    ("no answer", "5"),
])
def test_math_wrong_answers(response, gold):
  assert not get_benchmark("math500").score({"problem": "p", "answer": gold}, response).correct


def test_last_boxed_handles_nesting_and_forms():
  assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{\\sqrt{b}}}") == "\\frac{a}{\\sqrt{b}}"
  assert last_boxed("\\boxed 42$") == "42"
  assert last_boxed("\\fbox{x}") == "x"
  assert last_boxed("nothing") is None
  assert not math_answers_equal(None, "1")


# ---------------------------------------------------------------- code

ADD = {"task_id": "HumanEval/0", "prompt": 'import math\n\n\ndef add(a, b):\n    """Add."""\n',
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    "
               "assert candidate(-1, 1) == 0\n", "entry_point": "add"}


@pytest.mark.parametrize("response, correct, status", [
    ("Here:\n```python\ndef add(a, b):\n    return math.floor(a) + b\n```\nDone.", True,
     "passed"),
    ("    return a + b\n", True, "passed"),  # a body continuation
    ("```python\ndef helper():\n    pass\n```\n```python\ndef add(a, b):\n    return a + b",
     True, "passed"),  # the block defining the function, cut off before its fence closes
    ("```python\ndef add(a, b):\n    return a - b\n```", False, "failed"),
    ("```python\ndef add(a, b):\n    while True:\n        pass\n```", False, "timeout"),
    ("```python\ndef add(a, b):\n    return a +\n```", False, "failed"),  # syntax error
])
def test_humaneval_scoring(response, correct, status):
  score = get_benchmark("humaneval", timeout_s=1.0).score(ADD, response)
  assert score.correct == correct and score.details["status"] == status, score


def test_mbpp_scoring():
  problem = {"task_id": 11, "text": "Write a function to square a number.",
             "test_list": ["assert square(3) == 9", "assert square(-2) == 4"],
             "test_setup_code": ""}
  mbpp = get_benchmark("mbpp")
  assert "assert square(3) == 9" in mbpp.prompt(problem)
  assert mbpp.score(problem, "```python\ndef square(x):\n    return x * x\n```").correct
  wrong = mbpp.score(problem, "```python\ndef square(x):\n    return 2 * x\n```")
  assert not wrong.correct and "AssertionError" in wrong.details["error"][0]
  early_exit = "```python\nimport sys\ndef square(x):\n    return 0\nsys.exit(0)\n```"
  assert not mbpp.score(problem, early_exit).correct


def test_extract_code_prefers_the_block_defining_the_entry_point():
  text = "```\nprint(1)\n```\n```python\ndef f(x):\n    return x\n```"
  assert extract_code(text, "f").startswith("def f(x)")
  assert extract_code(text) == "def f(x):\n    return x"
  assert extract_code("x = 1") == "x = 1"


# ---------------------------------------------------------------- puzzles

COUNTDOWN = {"nums": [3, 5, 7], "target": 56}


@pytest.mark.parametrize("response, correct", [
    ("<reasoning>..</reasoning><answer>\\boxed{(3 + 5) \\times 7}</answer>", True),
    ("\\boxed{7*(5+3) = 56}", True),
    ("<answer>(3+5)*7</answer>", True),
    ("\\boxed{(3+5)*7*1}", False),  # 1 is not given
    ("\\boxed{(5+3)*7 - 3 + 3}", False),  # 3 used three times
    ("\\boxed{8 * 7}", False),
    ("\\boxed{3 + 5 + 7}", False),  # every number, wrong value
    ("no idea", False),
])
def test_countdown_scoring(response, correct):
  assert get_benchmark("countdown").score(COUNTDOWN, response).correct == correct


SUDOKU = {"puzzle": "3014002020004130", "solution": "3214142323414132"}


def test_sudoku_scoring_counts_cells():
  sudoku = get_benchmark("sudoku")
  right = sudoku.score(SUDOKU, "<reasoning>...</reasoning>\n<answer>\n3214142323414132\n</answer>")
  assert right.correct and right.score == 1.0
  spaced = sudoku.score(SUDOKU, "<answer>\n3214\n1423\n2341\n4132\n</answer>")
  assert spaced.correct and spaced.extracted == "3214142323414132"
  one_off = sudoku.score(SUDOKU, "The grid is 3214142323414133.")  # last blank wrong
  blanks = SUDOKU["puzzle"].count("0")
  assert not one_off.correct and one_off.score == pytest.approx((blanks - 1) / blanks)
  assert sudoku.score(SUDOKU, "I give up").score == 0.0


# ---------------------------------------------------------------- loading

def test_load_assigns_ids_and_reports_bad_lines(tmp_path):
  good = write_jsonl(tmp_path / "gsm8k.jsonl", [GSM_PROBLEM, GSM_PROBLEM])
  problems = get_benchmark("gsm8k").load(good)
  assert [p["id"] for p in problems] == ["gsm8k-0", "gsm8k-1"]
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(GSM_PROBLEM) + "\nnot json\n" +
                 json.dumps({"question": "q", "answer": "no final line"}) + "\n")
  with pytest.raises(ValueError, match=r"2 malformed gsm8k line\(s\) of 3 \(lines 2, 3\)"):
    get_benchmark("gsm8k").load(bad)
  dup = write_jsonl(tmp_path / "dup.jsonl", [ADD, ADD])
  with pytest.raises(ValueError, match="duplicate id 'HumanEval/0'"):
    get_benchmark("humaneval").load(dup)
  assert get_benchmark("humaneval").load(write_jsonl(tmp_path / "he.jsonl", [ADD]))[0][
      "id"] == "HumanEval/0"


def test_clear_errors_for_missing_data_and_unknown_names(tmp_path):
  with pytest.raises(ValueError, match=r"does not exist.*--override data_path=FILE.*question"):
    get_benchmark("gsm8k").load(tmp_path / "missing.jsonl")
  with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'; valid benchmarks: countdown"):
    get_benchmark("gsm9k")
  with pytest.raises(ValueError, match=r"has no option\(s\) \['timeout'\]; its options are: "
                                       "timeout_s, memory_mb"):
    get_benchmark("mbpp", timeout=3)
  with pytest.raises(ValueError, match="prompt_style must be one of"):
    get_benchmark("math500", prompt_style="fewshot")


# ---------------------------------------------------------------- sandbox

def test_sandbox_contains_hangs_memory_bombs_and_crashes():
  # Hangs get a short wall clock, run concurrently: both are killed at it.
  hangs = {"loop": "while True:\n    pass\n", "sleep": "import time\ntime.sleep(60)\n"}
  start = time.perf_counter()
  results = dict(zip(hangs, run_programs(list(hangs.values()), timeout_s=1.5, memory_mb=256),
                     strict=True))
  assert time.perf_counter() - start < 10  # concurrent, and the wall clock held
  assert results["loop"].status == "timeout" and results["loop"].duration_s < 5
  assert results["sleep"].status == "timeout"
  # Programs that end on their own get a wall clock they never reach, even on a loaded CI
  # machine where starting an interpreter can take seconds: a 1.5 s clock once killed the
  # bomb before it reached its memory limit, and a timeout here would hide the classification.
  enders = {
      "bomb": "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))\n",
      "segfault": "import ctypes\nctypes.string_at(0)\n",
      "ok": "print('fine')\n",
  }
  results = dict(zip(enders, run_programs(list(enders.values()), timeout_s=120,
                                          memory_mb=256), strict=True))
  assert results["bomb"].status == "memory", results["bomb"]
  assert results["segfault"].status == "crashed" and results["segfault"].returncode < 0
  assert results["ok"].passed and results["ok"].stdout == "fine"


def test_sandbox_isolates_cwd_and_guards_destructive_calls(tmp_path):
  result = run_program("import os\nprint(os.getcwd())\nos.system('true')\n")
  assert result.status == "failed" and "NoneType" in result.stderr
  assert "lookum-sandbox-" in result.stdout
  with pytest.raises(ValueError, match="must be > 0"):
    run_program("pass", timeout_s=0)

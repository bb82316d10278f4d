"""Toy tasks: generators, exact scorers, JSONL parsing, and the character tokenizer."""

import json

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from lookum_jax.tasks import (
    Countdown,
    Sudoku,
    build_tokenizer,
    decode_response,
    encode_batch,
    encode_example,
    encode_text,
    get_task,
    load_tokenizer,
    model_token_config,
    save_tokenizer,
    task_names,
    write_jsonl,
)
from lookum_jax.tasks.countdown import evaluate
from lookum_jax.tasks.sudoku import is_valid_solution, solve

# ---------------------------------------------------------------------------------------------
# Sudoku


@pytest.mark.parametrize("size,num_blanks,n", [(4, 10, 30), (4, 12, 10), (6, 20, 15), (9, 45, 4)])
def test_sudoku_generator_makes_unique_solution_puzzles(size, num_blanks, n):
  task = Sudoku(size=size, num_blanks=num_blanks)
  examples = task.generate(n, seed=7)
  assert len({ex["puzzle"] for ex in examples}) == n
  for ex in examples:
    puzzle = [int(c) for c in ex["puzzle"]]
    solution = [int(c) for c in ex["solution"]]
    assert len(puzzle) == size * size and puzzle.count(0) == num_blanks
    assert is_valid_solution(solution, size)
    assert all(p in (0, s) for p, s in zip(puzzle, solution, strict=True))
    count, found = solve(puzzle, size, limit=2)
    assert count == 1 and found == solution
    task.validate(ex)
    assert task.score(ex, ex["solution"])
  assert task.generate(n, seed=7) == examples
  assert task.generate(n, seed=8) != examples


def test_sudoku_solver_counts_multiple_solutions_and_contradictions():
  assert solve([0] * 16, 4, limit=2)[0] == 2
  clash = [1, 1] + [0] * 14
  assert solve(clash, 4)[0] == 0


def test_sudoku_box_shape_6x6_is_2_rows_by_3_columns():
  # Valid 6x6 grid with 2x3 boxes; with 3x2 boxes its first box would repeat digits.
  grid = "123456456123231564564231312645645312"
  assert is_valid_solution([int(c) for c in grid], 6)
  assert Sudoku(size=6).score({"puzzle": "0" * 36}, grid)


def test_sudoku_scorer_accepts_any_valid_completion():
  task = Sudoku(size=4)
  example = {"puzzle": "1000" + "0" * 12, "solution": "1234341221434321"}
  other = "1243341221344321"  # also valid, also starts with the given 1
  assert is_valid_solution([int(c) for c in other], 4) and other != example["solution"]
  assert task.score(example, other)
  assert task.score(example, " 1234\n3412\n2143\n4321 ")  # whitespace is ignored


def test_sudoku_scorer_rejects_near_misses():
  task = Sudoku(size=6, num_blanks=20)
  example = task.generate(1, seed=3)[0]
  puzzle, solution = example["puzzle"], example["solution"]
  blank = puzzle.index("0")
  digit = solution[blank]
  wrong = str(int(digit) % 6 + 1)
  one_off = solution[:blank] + wrong + solution[blank + 1:]
  assert not task.score(example, one_off)
  given_cell = next(i for i, c in enumerate(puzzle) if c != "0")
  # Relabelling two digits keeps the grid valid but contradicts the givens.
  a, b = solution[given_cell], str(int(solution[given_cell]) % 6 + 1)
  swapped = solution.translate(str.maketrans({a: b, b: a}))
  assert is_valid_solution([int(c) for c in swapped], 6) and not task.score(example, swapped)
  for bad in (solution[:-1], solution + "1", solution.replace(digit, "0", 1),
              solution.replace(digit, "7", 1), "", "x" * 36, puzzle):
    assert not task.score(example, bad), bad


def test_sudoku_options_are_validated():
  with pytest.raises(ValueError, match="Sudoku.size"):
    Sudoku(size=5)
  with pytest.raises(ValueError, match="Sudoku.num_blanks"):
    Sudoku(size=4, num_blanks=13)
  assert Sudoku(size=9).num_blanks == 45 and Sudoku(size=6).gen_length == 40


# ---------------------------------------------------------------------------------------------
# Countdown


def test_countdown_generated_examples_score_their_solution():
  task = Countdown(num_numbers=4, max_number=25, max_target=200)
  for ex in task.generate(50, seed=1):
    task.validate(ex)
    assert task.score(ex, ex["solution"])
    assert Countdown(num_numbers=4, use_all_numbers=True,
                     integer_intermediates=True).score(ex, ex["solution"])
    assert 1 <= ex["target"] <= 200 and len(ex["numbers"]) == 4
    assert len(ex["solution"]) <= task.gen_length
    assert len(task.prompt_text(ex)) <= task.prompt_length


def test_countdown_accepts_alternative_expressions():
  task = Countdown()
  ex = {"numbers": [3, 5, 7], "target": 56}
  for expr in ("(3+5)*7", "7*(5+3)", "(5+3)*7", " ( 3 + 5 ) * 7 ", "((3+5))*7"):
    assert task.score(ex, expr), expr
  # Numbers need not all be used; a number listed twice may be used twice.
  assert task.score({"numbers": [2, 3, 10], "target": 5}, "10/2")
  assert task.score({"numbers": [4, 4, 9], "target": 16}, "4*4")
  # Exact rational arithmetic: 6/(1-3/4) = 24.
  fraction_example = {"numbers": [1, 3, 4, 6], "target": 24}
  assert task.score(fraction_example, "6/(1-3/4)")
  assert not Countdown(integer_intermediates=True).score(fraction_example, "6/(1-3/4)")


def test_countdown_rejects_near_misses_and_malformed():
  task = Countdown()
  ex = {"numbers": [3, 5, 7, 2], "target": 24}
  assert task.score(ex, "(7+5)*2") and task.score(ex, "(5-2)*7+3")
  rejected = {
      "3*7+3": "reuses 3 (value 24)",
      "5*5-7+3*2": "reuses 5 (value 24)",
      "(7+5)*2+1": "uses 1, which is not given",
      "(7+5)*3": "wrong value",
      "27-3": "concatenates 2 and 7 (value 24)",
      "(7+5*2": "unbalanced",
      "(7+5))*2": "unbalanced",
      "7+*5": "syntax",
      "7*(-2+5)+3": "unary minus (value 24)",
      "(7+5)*2.0": "decimal point",
      "": "empty",
      "24": "the target is not a given number",
      "__import__('os').system('true')": "code",
      "(7+5)x2": "bad operator",
      "(07+5)*2": "leading zero",
  }
  for expr, why in rejected.items():
    assert not task.score(ex, expr), why
  assert not task.score({"numbers": [5, 3, 3], "target": 5}, "5/(3-3)")  # division by zero
  strict = Countdown(use_all_numbers=True)
  assert not strict.score(ex, "(7+5)*2")  # leaves 3 unused
  assert strict.score(ex, "(5-2)*7+3")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/() .x", max_size=30))
def test_countdown_scorer_never_raises(text):
  result = Countdown().score({"numbers": [3, 5, 7, 2], "target": 24}, text)
  assert isinstance(result, bool)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31))
def test_countdown_reference_round_trips_through_parser(seed):
  task = Countdown(num_numbers=4, max_number=30, max_target=500)
  ex = task.generate(1, seed)[0]
  value, literals = evaluate(ex["solution"], integer_intermediates=True)
  assert value == ex["target"] and sorted(literals) == sorted(ex["numbers"])


def test_evaluate_reports_reason():
  with pytest.raises(ValueError, match="division by zero"):
    evaluate("1/(2-2)")
  with pytest.raises(ValueError, match="unexpected character"):
    evaluate("1;2")


# ---------------------------------------------------------------------------------------------
# Arithmetic


@pytest.mark.parametrize("name,op", [("addition", "+"), ("multiplication", "*")])
def test_arithmetic_examples_and_scorer(name, op):
  task = get_task(name, min_digits=2, max_digits=5)
  examples = task.generate(200, seed=0)
  lengths = set()
  for ex in examples:
    a, b = ex["question"].split(op)
    lengths.update((len(a), len(b)))
    assert ex["answer"] == str(int(a) + int(b) if op == "+" else int(a) * int(b))
    task.validate(ex)
    assert task.score(ex, ex["answer"]) and task.score(ex, f" {ex['answer']}\n")
    assert len(ex["answer"]) <= task.gen_length
    wrong = str(int(ex["answer"]) + 1)
    assert not task.score(ex, wrong)
    assert not task.score(ex, "0" + ex["answer"])
    assert not task.score(ex, ex["answer"][:-1])
  assert lengths == {2, 3, 4, 5}


def test_arithmetic_validate_names_the_problem():
  task = get_task("addition")
  with pytest.raises(ValueError, match="expected '579'"):
    task.validate({"question": "123+456", "answer": "578"})
  with pytest.raises(ValueError, match="question must look like"):
    task.validate({"question": "123*456", "answer": "56088"})
  with pytest.raises(ValueError, match="missing key"):
    task.validate({"question": "1+1"})


# ---------------------------------------------------------------------------------------------
# Registry and JSONL


def test_get_task_errors_list_valid_choices():
  assert task_names() == ["addition", "chain", "countdown", "multiplication", "sudoku"]
  with pytest.raises(ValueError,
                     match="valid tasks: addition, chain, countdown, multiplication, sudoku"):
    get_task("sudok")
  with pytest.raises(ValueError, match="its options are: size, num_blanks"):
    get_task("sudoku", blanks=3)
  assert get_task("sudoku", size=4) == Sudoku(size=4)


def test_tasks_and_benchmarks_are_problem_sets_of_one_registry_shape():
  """The decode-and-score path reads any problem set through `prompt` and `score`."""
  from lookum_jax.benchmarks import BENCHMARKS, get_benchmark
  from lookum_jax.problems import ProblemSet
  from lookum_jax.tasks import TASKS

  task, benchmark = get_task("sudoku", size=4), get_benchmark("sudoku")
  assert isinstance(task, ProblemSet) and isinstance(benchmark, ProblemSet)
  example = task.generate(1, seed=0)[0]
  assert task.prompt(example) == task.prompt_text(example)
  assert task.score(example, example["solution"]) is True
  assert benchmark.score(example, f"<answer>{example['solution']}</answer>").correct
  for registry, kind in ((TASKS, "task"), (BENCHMARKS, "benchmark")):
    with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; valid {kind}s: "):
      registry.get("nope", {})
    with pytest.raises(ValueError, match=f"{kind} 'sudoku' has no option\\(s\\) \\['x'\\]"):
      registry.get("sudoku", {"x": 1})


@pytest.mark.parametrize("name,options", [("sudoku", {"size": 4}), ("countdown", {}),
                                          ("addition", {}), ("multiplication", {})])
def test_parse_jsonl_round_trip(tmp_path, name, options):
  task = get_task(name, **options)
  examples = task.generate(5, seed=2)
  path = tmp_path / "data.jsonl"
  write_jsonl(examples, path)
  assert task.parse_jsonl(path) == examples


def test_parse_jsonl_reports_every_bad_line(tmp_path):
  task = Sudoku(size=4)
  good = task.generate(3, seed=0)
  wrong_solution = dict(good[0], solution=good[1]["solution"])
  lines = [
      json.dumps(good[0]),                       # 1 ok
      "{not json",                               # 2
      json.dumps(good[1]),                       # 3 ok
      json.dumps({"puzzle": good[2]["puzzle"]}),  # 4 missing solution
      "",                                        # 5 blank
      json.dumps([1, 2]),                        # 6 not an object
      json.dumps(wrong_solution),                # 7 inconsistent with the givens
      json.dumps(dict(good[2], puzzle="12")),    # 8 wrong length
      json.dumps(good[2]),                       # 9 ok
  ]
  path = tmp_path / "bad.jsonl"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError) as info:
    task.parse_jsonl(path)
  message = str(info.value)
  assert "6 malformed sudoku line(s) of 9 (lines 2, 4, 5, 6, 7, 8)" in message
  for fragment in ("line 2: not valid JSON", "line 4: missing key(s) ['solution']",
                   "line 5: blank line", "line 6: expected a JSON object",
                   "line 7: solution is not a valid", "line 8: puzzle must be a string of 16"):
    assert fragment in message


# ---------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_round_trip_through_auto_tokenizer(tmp_path):
  paths = save_tokenizer(tmp_path)
  assert sorted(p.name for p in paths) == ["tokenizer.json", "tokenizer_config.json"]
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
  reference = build_tokenizer()
  assert tokenizer.get_vocab() == reference.get_vocab()
  ids = model_token_config(tokenizer)
  assert tokenizer.convert_ids_to_tokens(
      [ids["mask_token_id"], ids["eos_token_id"], ids["pad_token_id"]]) == [
          "<|mask|>", "<|endoftext|>", "<|pad|>"]
  assert ids["vocab_size"] >= len(tokenizer)
  texts = ["123+4567=", "3,5,7:56", "(3+5)*7", "0102001400030400", "a b\nc;?!"]
  for name in task_names():
    task = get_task(name, **({"size": 9} if name == "sudoku" else {}))
    ex = task.generate(1, seed=0)[0]
    texts += [task.prompt_text(ex), task.target_text(ex)]
  for text in texts:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert len(encoded) == len(text)  # one token per character
    assert tokenizer.decode(encoded) == text
    assert encoded == reference.encode(text, add_special_tokens=False)
  with_specials = "12<|mask|>3<|endoftext|>"
  encoded = tokenizer.encode(with_specials, add_special_tokens=False)
  assert encoded[2] == ids["mask_token_id"] and encoded[-1] == ids["eos_token_id"]
  assert tokenizer.decode(encoded) == with_specials
  assert load_tokenizer(tmp_path).get_vocab() == reference.get_vocab()


def test_encode_text_rejects_unknown_characters():
  with pytest.raises(ValueError, match=r"outside the tokenizer's alphabet: \['A', '€'\]"):
    encode_text(build_tokenizer(), "1A+€")


def test_encode_example_pads_response_with_eos_and_decode_stops_there():
  tokenizer = build_tokenizer()
  task = get_task("addition", max_digits=4)
  ex = {"question": "9999+1", "answer": "10000"}
  prompt, response = encode_example(task, ex, tokenizer)
  assert tokenizer.decode(prompt) == "9999+1="
  assert response.shape == (task.gen_length,) == (8,)
  eos = tokenizer.eos_token_id
  assert response[5:].tolist() == [eos] * 3
  assert decode_response(tokenizer, response) == "10000"
  assert decode_response(tokenizer, np.array([5, eos, 6])) == "0"
  mask = tokenizer.mask_token_id
  assert decode_response(tokenizer, [6, mask, 7]) == "1<|mask|>2"
  assert decode_response(tokenizer, [6, 63, 7]) == "1<|unk|>2"  # spare embedding row
  with pytest.raises(ValueError, match="gen_length=4"):
    encode_example(task, ex, tokenizer, gen_length=4)
  with pytest.raises(ValueError, match="no reference response"):
    encode_example(Countdown(), {"numbers": [1, 2], "target": 3}, tokenizer)


def test_encode_batch_left_pads_prompts():
  tokenizer = build_tokenizer()
  task = Countdown()
  examples = [{"numbers": [1, 2, 3], "target": 6, "solution": "1+2+3"},
              {"numbers": [10, 20, 3], "target": 90, "solution": "(10+20)*3"}]
  batch = encode_batch(task, examples, tokenizer)
  p, g = task.prompt_length, task.gen_length
  assert batch["tokens"].shape == (2, p + g) and batch["tokens"].dtype == np.int32
  row0 = batch["tokens"][0]
  assert tokenizer.decode(row0[batch["attention_mask"][0]]).startswith("1,2,3:6" + "1+2+3")
  assert (row0[~batch["attention_mask"][0]] == tokenizer.pad_token_id).all()
  assert not batch["attention_mask"][0, 0] and batch["attention_mask"][1, -g - 9]
  assert batch["response_mask"].sum(axis=1).tolist() == [g, g]
  assert batch["response_mask"][:, p:].all() and not batch["response_mask"][:, :p].any()
  assert decode_response(tokenizer, batch["tokens"][1, p:]) == "(10+20)*3"

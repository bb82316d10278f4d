"""The register-chain task (long cascading answers) and Sudoku's blank-only scoring."""

import pytest

from lookum_jax.tasks import (
    RegisterChain,
    Sudoku,
    build_tokenizer,
    decode_response,
    encode_batch,
    encode_example,
    get_task,
    write_jsonl,
)
from lookum_jax.tasks.chain import apply_operation, run_program


def _corrupt_step(task: RegisterChain, example: dict, step: int) -> str:
  """The reference response with step `step` changed and every later step recomputed from
  it, as a decoder that slipped once and then followed the rule would write."""
  line = example["program"][example["query"]]
  values = [int(d) for d in example["trace"]]
  values[step] = (values[step] + 1) % 10
  for i in range(step + 1, len(values)):
    values[i] = apply_operation(values[i - 1], line[1 + 2 * i], int(line[2 + 2 * i]))
  if task.echo:
    return "".join(f"{line[1 + 2 * i:3 + 2 * i]}{v}" for i, v in enumerate(values)) \
        + f"={values[-1]}"
  return "".join(f"{v};" for v in values) + f"={values[-1]}"


def test_operations_follow_the_options():
  for options, allowed in (({}, {"+1", "+2", "+3", "-1", "-2", "-3", "*3", "*7", "*9"}),
                           ({"max_operand": 1, "multiply": False}, {"+1", "-1"})):
    task = get_task("chain", num_steps=63, num_registers=3, **options)
    seen = {line[i:i + 2] for example in task.generate(20, seed=0)
            for line in example["program"] for i in range(1, len(line), 2)}
    assert seen == allowed


def test_query_last():
  task = get_task("chain", num_steps=10, num_registers=3, query_last=True)
  examples = task.generate(20, seed=0)
  assert {ex["query"] for ex in examples} == {2}
  assert all(task.prompt_text(ex).endswith("?c") for ex in examples)
  assert len({ex["query"] for ex in get_task("chain", num_steps=10).generate(20, seed=0)}) == 3
  with pytest.raises(ValueError, match="last register"):
    task.validate({**examples[0], "query": 0, "trace": run_program(examples[0]["program"][0])})


def test_generation_is_deterministic_by_seed():
  task = get_task("chain", num_steps=20, num_registers=3)
  assert task.generate(5, seed=3) == task.generate(5, seed=3)
  assert task.generate(5, seed=3) != task.generate(5, seed=4)
  assert task.generate(3, seed=3) == task.generate(5, seed=3)[:3]


@pytest.mark.parametrize("num_steps, num_registers, gen_length, prompt_range", [
    (63, 3, 128, (256, 512)),  # the default: 128-token answers, prompt 256-512 tokens
    (127, 2, 256, (512, 1024)),  # 256-token answers
    (63, 5, 128, (512, 1024)),  # the long-context option: >= 512 prompt tokens
    ((42, True), 2, 128, (256, 512)),  # toy-chain's: restated operations, 2 registers
    ((84, True), 2, 256, (512, 1024)),
    ((42, True), 4, 128, (512, 1024)),
])
def test_lengths(num_steps, num_registers, gen_length, prompt_range):
  num_steps, echo = num_steps if isinstance(num_steps, tuple) else (num_steps, False)
  task = get_task("chain", num_steps=num_steps, num_registers=num_registers, echo=echo)
  assert task.gen_length == gen_length and gen_length % 32 == 0  # semi-AR blocks of 32
  for example in task.generate(20, seed=0):
    prompt = task.prompt_text(example)
    assert len(prompt) == task.prompt_length
    assert prompt_range[0] <= len(prompt) <= prompt_range[1]
    assert len(task.target_text(example)) <= task.gen_length
  default = RegisterChain()
  assert (default.num_steps, default.num_registers, default.gen_length) == (63, 3, 128)
  assert len(default.target_text(default.generate(1, 0)[0])) == 128


def test_worked_example():
  task = get_task("chain", num_steps=3, num_registers=2, max_operand=9)
  example = {"program": ["4+7-3*9", "1*3+5-2"], "query": 1, "trace": "386"}
  task.validate(example)
  with pytest.raises(ValueError, match="not allowed"):  # +7 and +5 need max_operand >= 7
    get_task("chain", num_steps=3, num_registers=2).validate(example)
  assert task.prompt_text(example) == "a=4+7-3*9;b=1*3+5-2;?b"
  assert task.target_text(example) == "3;8;6;=6"
  # 4+7 = 11 -> 1; 1-3 = -2 -> 8; 8*9 = 72 -> 2 (mod 10).
  assert run_program("4+7-3*9") == "182"
  assert [apply_operation(4, "+", 7), apply_operation(1, "-", 3), apply_operation(8, "*", 9)] \
      == [1, 8, 2]
  echo = get_task("chain", num_steps=3, num_registers=2, max_operand=9, echo=True)
  assert echo.prompt_text(example) == "a=4;+7;-3;*9;b=1;*3;+5;-2;?b"
  assert echo.target_text(example) == "*33+58-26=6"
  assert echo.score(example, "*33+58-26=6") and not echo.score(example, "*33+58+26=6")
  assert echo.step_accuracy(example, "*33+58+26=6") == pytest.approx(2 / 3)  # wrong echo


def test_steps_sit_at_a_fixed_distance_from_their_operations():
  for echo in (False, True):
    task = get_task("chain", num_steps=30, num_registers=3, echo=echo)
    for example in task.generate(5, seed=0):
      prompt, target = task.prompt_text(example), task.target_text(example)
      start = prompt.index(f"{'abc'[example['query']]}=") + 3  # after "x=<start digit>"
      ops = prompt[start:start + task.step_width * task.num_steps]
      for i in range(task.num_steps):
        op = example["program"][example["query"]][1 + 2 * i:3 + 2 * i]
        assert op in ops[i * task.step_width:(i + 1) * task.step_width], i
        if echo:
          assert target[i * 3:i * 3 + 2] == op


@pytest.mark.parametrize("echo", [False, True])
def test_scorer_exact_and_per_step(echo):
  task = get_task("chain", num_steps=30, num_registers=2, echo=echo)
  for example in task.generate(10, seed=1):
    target = task.target_text(example)
    assert task.score(example, target) and task.final_correct(example, target)
    assert task.step_accuracy(example, target) == 1.0
    assert task.score(example, " ".join(target))  # whitespace is ignored
    for bad in ("", "=", target[:-1], target.replace("=", ";"), target + "0", "<|mask|>"):
      assert not task.score(example, bad)
    # The last step's value wrong (its final answer right): 29 of 30 steps.
    wrong = str((int(example["trace"][-1]) + 1) % 10)
    response = target[:-4] + wrong + target[-3:] if not echo else target[:-3] + wrong + "=" \
        + target[-1]
    assert task.parse_response(response)[0][:-1] == task.expected_steps(example)[:-1]
    assert not task.score(example, response) and task.final_correct(example, response)
    assert task.step_accuracy(example, response) == pytest.approx(29 / 30)
    lenient = get_task("chain", num_steps=30, num_registers=2, strict=False, echo=echo)
    assert lenient.score(example, response)  # strict=False: the final answer only


@pytest.mark.parametrize("options", [{}, {"max_operand": 9}, {"multiply": False},
                                     {"echo": True, "max_operand": 2, "multiply": False}])
def test_an_early_error_cascades(options):
  task = get_task("chain", num_steps=40, num_registers=3, **options)
  for example in task.generate(20, seed=2):
    response = _corrupt_step(task, example, step=5)
    assert not task.score(example, response)
    assert not task.final_correct(example, response)
    # Every step from the slip on is wrong: the operations are bijections mod 10.
    assert task.step_accuracy(example, response) == pytest.approx(5 / 40)


@pytest.mark.parametrize("echo", [False, True])
def test_answer_does_not_copy_the_prompt(echo):
  task = get_task("chain", num_steps=42, num_registers=3, echo=echo)
  for example in task.generate(20, seed=5):
    prompt, target = task.prompt_text(example), task.target_text(example)
    assert target not in prompt
    # No two consecutive steps appear verbatim in the prompt: values are never copied.
    width = task.step_width
    assert not any(target[i:i + 2 * width] in prompt
                   for i in range(0, len(target) - 2 * width, width))


def test_jsonl_round_trip(tmp_path):
  task = get_task("chain", num_steps=15, num_registers=4)
  examples = task.generate(8, seed=7)
  path = tmp_path / "chain.jsonl"
  write_jsonl(examples, path)
  assert task.parse_jsonl(path) == examples


@pytest.mark.parametrize("bad, message", [
    ({"program": ["4+7-3"], "query": 0, "trace": "18"}, "list of 2"),
    ({"program": ["4+7-3*9", "1*3+5"], "query": 0, "trace": "182"}, "list of 2"),
    ({"program": ["4+7-3*5", "1*3+5-2"], "query": 0, "trace": "180"}, "not allowed"),
    ({"program": ["4+7-3*9", "1*3+5-2"], "query": 2, "trace": "386"}, "query"),
    ({"program": ["4+7-3*9", "1*3+5-2"], "query": 1, "trace": "387"}, "wrong"),
    ({"program": ["4+7-3*9", "1*3+5-2"], "query": 1}, "missing"),
])
def test_validate_rejects_malformed_examples(bad, message):
  with pytest.raises(ValueError, match=message):
    get_task("chain", num_steps=3, num_registers=2, max_operand=9).validate(bad)


def test_options_are_validated():
  for options in ({"num_steps": 0}, {"num_registers": 27}, {"strict": 1}, {"max_operand": 0},
                  {"multiply": "yes"}, {"echo": None}, {"query_last": 0}):
    with pytest.raises(ValueError, match="RegisterChain"):
      get_task("chain", **options)


@pytest.mark.parametrize("options", [{}, {"num_steps": 42, "num_registers": 2, "echo": True}])
def test_char_tokenizer_round_trip(options):
  task, tok = get_task("chain", **options), build_tokenizer()
  examples = task.generate(4, seed=0)
  for example in examples:
    prompt_ids, response_ids = encode_example(task, example, tok)
    assert len(prompt_ids) == task.prompt_length and len(response_ids) == task.gen_length
    assert tok.decode(prompt_ids) == task.prompt_text(example)
    assert task.score(example, decode_response(tok, response_ids))
  batch = encode_batch(task, examples, tok)
  assert batch["tokens"].shape == (4, task.prompt_length + task.gen_length)


def test_sudoku_blank_responses():
  grid, blanks = Sudoku(size=4, num_blanks=10), Sudoku(size=4, num_blanks=10, response="blanks")
  assert blanks.gen_length == 16 and Sudoku(size=9, response="blanks").gen_length == 48
  for example in grid.generate(10, seed=0):
    solution, puzzle = example["solution"], example["puzzle"]
    only = blanks.target_text(example)
    assert len(only) == 10 and all(solution[i] == d for i, d in zip(
        [i for i, p in enumerate(puzzle) if p == "0"], only, strict=True))
    blanks.validate(example)
    assert blanks.score(example, only) and not blanks.score(example, solution)
    assert grid.score(example, solution) and not grid.score(example, only)
    assert blanks.blank_accuracy(example, only) == grid.blank_accuracy(example, solution) == 1.0
    # One blank wrong: 9 of 10 blanks right, however many givens a grid response copies.
    wrong = str(int(only[0]) % 4 + 1)
    assert blanks.blank_accuracy(example, wrong + only[1:]) == pytest.approx(0.9)
    first = puzzle.index("0")
    changed = solution[:first] + wrong + solution[first + 1:]
    assert grid.blank_accuracy(example, changed) == pytest.approx(0.9)
    assert blanks.blank_accuracy(example, only[:-1]) == grid.blank_accuracy(example, "1") == 0.0
  with pytest.raises(ValueError, match="Sudoku.response"):
    Sudoku(size=4, response="cells")

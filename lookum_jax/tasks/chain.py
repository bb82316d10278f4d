"""Register chains: a long scratchpad in which every step depends on the one before.

The prompt lists `num_registers` programs, one per register: a start digit, then `num_steps`
operations on it, each `+d`, `-d` or `*d`, all mod 10. It ends with a question naming one
register. The answer is that register's trace: its value after every operation, then the
final value after `=` (in the place of GSM8K's `####` marker; the char tokenizer has no `#`).
With two registers and three steps:

    prompt:   a=4+7-3*9;b=1*3+5-2;?b
    answer:   3;8;6;=6

Every operation is a bijection of the digits mod 10 (`+d`, `-d` with 1 <= d <= max_operand;
`*3`, `*7`, `*9`), so a wrong step makes every later step wrong: a local error cascades to the
final answer. Small operands keep the task learnable by a small model: with operands up to 9
the next value is independent of the previous value alone and of the operation alone (an
XOR-like target with no partial signal), and a pilot stayed at chance for 700 steps. The answer
never copies the prompt: each step is computed from the previous one. The other registers'
programs are distractors that make the prompt long (so prefix and dual KV caches matter)
and make the model pick the right line.

With `echo=True` each step first restates its operation, as a GSM8K chain of thought
writes `x=a+b=59`, and the prompt's lines use the same three characters per step:

    prompt:   a=4;+7;-3;*9;b=1;*3;+5;-2;?b
    answer:   *33+58-26=6

Only one token a step (the new value) depends on the step before; it is ready to commit
only once that value is known. The rest (separators, restated operations) can be written at
any time, so a decoder committing two or more tokens a step has to pair each ready value
with such a token: a confidence-ordered one spends its early steps on the easy tokens and
is then left guessing values. That is what makes samplers matter on this task.

Example: `{"program": ["4+7-3*9", "1*3+5-2"], "query": 1, "trace": "386"}` (`trace`: the
queried register's value after each operation), whatever the rendering options.
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from typing import Any, ClassVar

from lookum_jax.tasks.base import Task, require_keys, round_up

MODULUS = 10
# Multipliers that are bijections mod 10, so an error is never erased by a later step.
MULTIPLIERS = (3, 7, 9)
FINAL_MARKER = "="
STEP_SEPARATOR = ";"
REGISTER_NAMES = string.ascii_lowercase


def apply_operation(value: int, op: str, operand: int) -> int:
  if op == "+":
    return (value + operand) % MODULUS
  if op == "-":
    return (value - operand) % MODULUS
  if op == "*":
    return (value * operand) % MODULUS
  raise ValueError(f"unknown operation {op!r}")


def run_program(program: str) -> str:
  """The trace of one register's program ('4+7-3*9' -> '386')."""
  value = int(program[0])
  trace = []
  for i in range(1, len(program), 2):
    value = apply_operation(value, program[i], int(program[i + 1]))
    trace.append(str(value))
  return "".join(trace)


@dataclasses.dataclass(frozen=True)
class RegisterChain(Task):
  """`num_registers` programs of `num_steps` mod-10 operations; the answer is the queried
  register's value after each step (with `echo`, each preceded by its operation), then
  `=<final value>`.

  The response is `w * num_steps + 2` tokens, w = 2 (3 with `echo`): `num_steps=63` gives
  128, `num_steps=127` gives 256 (with `echo`: 42 and 84). The prompt is
  `num_registers * (w * num_steps + 4) + 2` tokens: 392 for the defaults, 652 with
  `num_registers=5`; 262 for toy-chain's (42 steps, 2 registers, echo).

  `query_last`: the queried register is always the last line, right before the answer, and
  the other lines are distractors at fixed places. Otherwise the model must pick the line
  the question names: a pilot copied operations from one line at a fixed offset within 300
  steps but still ignored the question after 500 (75% of operations right with 2 lines).

  `strict`: `score` requires every step and the final answer to be right (the default:
  a final digit alone is right by chance one time in ten); False scores the final answer
  only, as GSM8K does. `step_accuracy` gives per-step credit either way.
  """

  name: ClassVar[str] = "chain"

  num_steps: int = 63
  num_registers: int = 3
  max_operand: int = 3
  multiply: bool = True
  echo: bool = False
  query_last: bool = False
  strict: bool = True

  def __post_init__(self):
    if not isinstance(self.num_steps, int) or not 1 <= self.num_steps <= 1000:
      raise ValueError(f"RegisterChain.num_steps must be an int in [1, 1000], "
                       f"got {self.num_steps!r}.")
    most = len(REGISTER_NAMES)
    if not isinstance(self.num_registers, int) or not 1 <= self.num_registers <= most:
      raise ValueError(f"RegisterChain.num_registers must be an int in [1, {most}], "
                       f"got {self.num_registers!r}.")
    if not isinstance(self.max_operand, int) or not 1 <= self.max_operand <= 9:
      raise ValueError(f"RegisterChain.max_operand must be an int in [1, 9], "
                       f"got {self.max_operand!r}.")
    for name in ("multiply", "echo", "query_last", "strict"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"RegisterChain.{name} must be a bool, got {getattr(self, name)!r}.")

  @property
  def operands(self) -> dict[str, tuple[int, ...]]:
    """The allowed operands of each operation."""
    small = tuple(range(1, self.max_operand + 1))
    return {"+": small, "-": small, **({"*": MULTIPLIERS} if self.multiply else {})}

  @property
  def step_width(self) -> int:
    """Characters per step, the same in the answer and in the prompt's lines, so step i of
    the answer sits at a fixed distance from operation i of each line."""
    return 3 if self.echo else 2

  @property
  def answer_length(self) -> int:
    return self.step_width * self.num_steps + len(FINAL_MARKER) + 1

  @property
  def gen_length(self) -> int:
    return round_up(self.answer_length, 32)

  @property
  def prompt_length(self) -> int:
    # "a=" + start digit + the operations + ";" per register, then "?" + name.
    return self.num_registers * (self.step_width * self.num_steps + 4) + 2

  def generate(self, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    operands = self.operands
    ops = sorted(operands)
    examples = []
    for _ in range(n):
      program = []
      for _ in range(self.num_registers):
        line = [str(rng.randrange(MODULUS))]
        for _ in range(self.num_steps):
          op = rng.choice(ops)
          line += [op, str(rng.choice(operands[op]))]
        program.append("".join(line))
      query = self.num_registers - 1 if self.query_last else rng.randrange(self.num_registers)
      examples.append({"program": program, "query": query, "trace": run_program(program[query])})
    return examples

  def prompt_text(self, example: dict[str, Any]) -> str:
    lines = []
    for i, line in enumerate(example["program"]):
      if self.echo:  # "4+2-1" -> "4;+2;-1": three characters an operation, as in the answer
        line = line[0] + "".join(f"{STEP_SEPARATOR}{line[j:j + 2]}" for j in range(1, len(line), 2))
      lines.append(f"{REGISTER_NAMES[i]}={line}{STEP_SEPARATOR}")
    return f"{''.join(lines)}?{REGISTER_NAMES[example['query']]}"

  def expected_steps(self, example: dict[str, Any]) -> list[str]:
    """The text of each step of the reference answer: the value ("6"), or with `echo` the
    operation and the value ("+26")."""
    trace = example["trace"]
    if not self.echo:
      return list(trace)
    line = example["program"][example["query"]]
    return [line[1 + 2 * i:3 + 2 * i] + value for i, value in enumerate(trace)]

  def target_text(self, example: dict[str, Any]) -> str | None:
    separator = "" if self.echo else STEP_SEPARATOR
    steps = "".join(f"{step}{separator}" for step in self.expected_steps(example))
    return steps + FINAL_MARKER + example["trace"][-1]

  def parse_response(self, response_text: str) -> tuple[list[str], str | None]:
    """(step values, final answer) of a response; the final answer is None without a
    `=` marker. Whitespace is ignored; a step value is whatever lies between separators."""
    text = "".join(response_text.split())
    chain, marker, final = text.partition(FINAL_MARKER)
    if self.echo:
      steps = [chain[i:i + self.step_width] for i in range(0, len(chain), self.step_width)]
    else:
      steps = chain.split(STEP_SEPARATOR)
      if steps and steps[-1] == "":
        steps.pop()
    return steps, (final if marker else None)

  def step_accuracy(self, example: dict[str, Any], response_text: str) -> float:
    """The fraction of steps whose value is right, step i of the response against step i
    of the true trace (a response with the wrong number of steps still gets credit for the
    steps it has right)."""
    steps, _ = self.parse_response(response_text)
    expected = self.expected_steps(example)
    return sum(s == t for s, t in zip(steps, expected, strict=False)) / len(expected)

  def final_correct(self, example: dict[str, Any], response_text: str) -> bool:
    _, final = self.parse_response(response_text)
    return final == example["trace"][-1]

  def score(self, example: dict[str, Any], response_text: str) -> bool:
    if not self.final_correct(example, response_text):
      return False
    if not self.strict:
      return True
    steps, _ = self.parse_response(response_text)
    return steps == self.expected_steps(example)

  def validate(self, example: dict[str, Any]) -> None:
    require_keys(example, ("program", "query", "trace"))
    program, query, trace = example["program"], example["query"], example["trace"]
    line_pattern = re.compile(rf"[0-9]([-+*][0-9]){{{self.num_steps}}}")
    if (not isinstance(program, list) or len(program) != self.num_registers
        or not all(isinstance(line, str) and line_pattern.fullmatch(line) for line in program)):
      raise ValueError(
          f"program must be a list of {self.num_registers} strings, each a start digit and "
          f"{self.num_steps} operations like '+7', '-3' or '*9', got {program!r}")
    operands = self.operands
    for line in program:
      for i in range(1, len(line), 2):
        if int(line[i + 1]) not in operands.get(line[i], ()):
          raise ValueError(f"operation {line[i:i + 2]!r} in {line!r} is not allowed; operands: "
                           f"{ {op: list(v) for op, v in operands.items()} }")
    if not isinstance(query, int) or isinstance(query, bool) or \
        not 0 <= query < self.num_registers:
      raise ValueError(f"query must be an int in [0, {self.num_registers}), got {query!r}")
    if self.query_last and query != self.num_registers - 1:
      raise ValueError(f"query must be the last register ({self.num_registers - 1}) with "
                       f"query_last, got {query!r}")
    expected = run_program(program[query])
    if trace != expected:
      raise ValueError(f"trace {trace!r} is wrong for register {query} (expected {expected!r})")

"""Sudoku (4x4, 6x6 with 2x3 boxes, 9x9): puzzles with exactly one solution.

Example: `{"puzzle": "<N*N chars, 0 = blank>", "solution": "<N*N digits>"}`, cells in
row-major order. The prompt is the puzzle string and the reference response the solution
string; the scorer accepts any valid completion consistent with the givens (for generated
puzzles that is the unique solution, for puzzles from a file it need not be).

With `response="blanks"` the response is only the blank cells' digits, in row-major order,
so no decoding step is spent copying givens; `blank_accuracy` scores either form on the
blank cells alone.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any, ClassVar

from lookum_jax.tasks.base import Task, require_keys, round_up

# Box shape (rows, cols) of each supported grid size.
BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
# Fewest givens for which unique-solution puzzles exist (4x4: 4; 6x6: 8; 9x9: 17).
_MIN_GIVENS = {4: 4, 6: 8, 9: 17}
_DEFAULT_BLANKS = {4: 10, 6: 20, 9: 45}
# Generation restarts from a fresh grid when the blank target is not reached; cap the restarts.
_MAX_ATTEMPTS = 1000
RESPONSE_FORMS = ("grid", "blanks")


@dataclasses.dataclass(frozen=True)
class _Geometry:
  """Row/column/box index of every cell, precomputed per grid size."""

  size: int
  row: tuple[int, ...]
  col: tuple[int, ...]
  box: tuple[int, ...]


@functools.cache
def _geometry(size: int) -> _Geometry:
  box_rows, box_cols = BOX_SHAPES[size]
  cells = range(size * size)
  return _Geometry(
      size=size,
      row=tuple(i // size for i in cells),
      col=tuple(i % size for i in cells),
      box=tuple((i // size) // box_rows * box_rows + (i % size) // box_cols for i in cells))


def solve(cells: list[int], size: int, limit: int = 2,
          rng: random.Random | None = None) -> tuple[int, list[int] | None]:
  """Counts solutions of a grid (0 = blank) up to `limit`, returning (count, first solution).

  Backtracking on bitmasks, always branching on the blank with fewest candidates. With `rng`,
  candidate digits are tried in random order (used to draw random full grids).
  """
  geo = _geometry(size)
  full = (1 << size) - 1
  rows, cols, boxes = [0] * size, [0] * size, [0] * size
  grid = list(cells)
  for i, value in enumerate(grid):
    if value:
      bit = 1 << (value - 1)
      r, c, b = geo.row[i], geo.col[i], geo.box[i]
      if (rows[r] | cols[c] | boxes[b]) & bit:
        return 0, None  # the givens already clash
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
  blanks = [i for i, value in enumerate(grid) if not value]
  found: list[list[int]] = []
  count = 0

  def search() -> bool:  # True once `limit` solutions were found
    nonlocal count
    best, best_mask, best_count = -1, 0, size + 1
    for i in blanks:
      if grid[i]:
        continue
      mask = full & ~(rows[geo.row[i]] | cols[geo.col[i]] | boxes[geo.box[i]])
      n = mask.bit_count()
      if n < best_count:
        best, best_mask, best_count = i, mask, n
        if n <= 1:
          break
    if best < 0:
      count += 1
      if not found:
        found.append(list(grid))
      return count >= limit
    if best_count == 0:
      return False
    digits = [d for d in range(1, size + 1) if best_mask >> (d - 1) & 1]
    if rng is not None:
      rng.shuffle(digits)
    r, c, b = geo.row[best], geo.col[best], geo.box[best]
    for d in digits:
      bit = 1 << (d - 1)
      grid[best] = d
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
      stop = search()
      grid[best] = 0
      rows[r] &= ~bit
      cols[c] &= ~bit
      boxes[b] &= ~bit
      if stop:
        return True
    return False

  search()
  return count, (found[0] if found else None)


def is_valid_solution(grid: list[int], size: int) -> bool:
  """Whether every row, column and box of a full grid holds each digit 1..size once."""
  if len(grid) != size * size or any(not 1 <= v <= size for v in grid):
    return False
  geo = _geometry(size)
  seen = set()
  for i, v in enumerate(grid):
    for unit in (("r", geo.row[i]), ("c", geo.col[i]), ("b", geo.box[i])):
      key = (*unit, v)
      if key in seen:
        return False
      seen.add(key)
  return True


def _candidates(cells: list[int], i: int, geo: _Geometry) -> int:
  used = 0
  for j, v in enumerate(cells):
    if v and j != i and (geo.row[j] == geo.row[i] or geo.col[j] == geo.col[i]
                         or geo.box[j] == geo.box[i]):
      used |= 1 << (v - 1)
  return ((1 << geo.size) - 1) & ~used


@dataclasses.dataclass(frozen=True)
class Sudoku(Task):
  """Sudoku of side `size` (4, 6 or 9) with `num_blanks` blank cells (default per size)."""

  name: ClassVar[str] = "sudoku"

  size: int = 6
  num_blanks: int | None = None
  response: str = "grid"  # "grid": all N*N cells; "blanks": the blank cells only

  def __post_init__(self):
    if self.response not in RESPONSE_FORMS:
      raise ValueError(
          f"Sudoku.response must be one of {RESPONSE_FORMS}, got {self.response!r}.")
    if self.size not in BOX_SHAPES:
      raise ValueError(f"Sudoku.size must be one of {sorted(BOX_SHAPES)}, got {self.size!r}.")
    if self.num_blanks is None:
      object.__setattr__(self, "num_blanks", _DEFAULT_BLANKS[self.size])
    most = self.size * self.size - _MIN_GIVENS[self.size]
    if not isinstance(self.num_blanks, int) or not 1 <= self.num_blanks <= most:
      raise ValueError(
          f"Sudoku.num_blanks must be an int in [1, {most}] for size {self.size} (a unique "
          f"solution needs at least {_MIN_GIVENS[self.size]} givens), got {self.num_blanks!r}.")

  @property
  def num_cells(self) -> int:
    return self.size * self.size

  @property
  def gen_length(self) -> int:
    cells = self.num_blanks if self.response == "blanks" else self.num_cells
    return round_up(cells, 8)

  @property
  def prompt_length(self) -> int:
    return self.num_cells

  def generate(self, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [self._generate_one(rng) for _ in range(n)]

  def _generate_one(self, rng: random.Random) -> dict[str, Any]:
    geo = _geometry(self.size)
    for _ in range(_MAX_ATTEMPTS):
      _, solution = solve([0] * self.num_cells, self.size, limit=1, rng=rng)
      puzzle = list(solution)
      order = list(range(self.num_cells))
      rng.shuffle(order)
      blanks = 0
      for i in order:
        if blanks == self.num_blanks:
          break
        value, puzzle[i] = puzzle[i], 0
        # A blank whose digit is forced by its peers keeps the solution unique; only
        # otherwise is the (slower) solution count needed.
        if _candidates(puzzle, i, geo).bit_count() == 1 or solve(puzzle, self.size)[0] == 1:
          blanks += 1
        else:
          puzzle[i] = value
      if blanks == self.num_blanks:
        return {"puzzle": "".join(map(str, puzzle)), "solution": "".join(map(str, solution))}
    raise RuntimeError(
        f"could not make a {self.size}x{self.size} puzzle with {self.num_blanks} blanks and a "
        f"unique solution in {_MAX_ATTEMPTS} attempts; lower num_blanks.")

  def prompt_text(self, example: dict[str, Any]) -> str:
    return example["puzzle"]

  def target_text(self, example: dict[str, Any]) -> str | None:
    solution = example.get("solution")
    if solution is None or self.response == "grid":
      return solution
    return "".join(s for p, s in zip(example["puzzle"], solution, strict=True) if p == "0")

  def _response_grid(self, example: dict[str, Any], response_text: str) -> list[int] | None:
    """The full grid a response stands for (blank-only responses filled into the puzzle), or
    None when it is malformed."""
    text = "".join(response_text.split())
    if self.response == "blanks":
      puzzle = example["puzzle"]
      if len(text) != puzzle.count("0") or len(puzzle) != self.num_cells:
        return None
      digits = iter(text)
      text = "".join(next(digits) if p == "0" else p for p in puzzle)
    return self._parse_grid(text, blanks_ok=False)

  def blank_accuracy(self, example: dict[str, Any], response_text: str) -> float:
    """The fraction of blank cells holding the reference solution's digit (givens, which a
    grid response merely copies, are not counted). A response of the wrong length scores 0;
    a grid response that changes a given still gets credit for its blanks."""
    text = "".join(response_text.split())
    puzzle, solution = example["puzzle"], example["solution"]
    blanks = [i for i, p in enumerate(puzzle) if p == "0"]
    if self.response == "blanks":
      cells = text if len(text) == len(blanks) else None
    else:
      cells = "".join(text[i] for i in blanks) if len(text) == self.num_cells else None
    if cells is None or not blanks:
      return 0.0
    return sum(c == solution[i] for c, i in zip(cells, blanks, strict=True)) / len(blanks)

  def _parse_grid(self, text: str, *, blanks_ok: bool) -> list[int] | None:
    if len(text) != self.num_cells:
      return None
    low = 0 if blanks_ok else 1
    grid = []
    for ch in text:
      if not ("0" <= ch <= "9") or not low <= int(ch) <= self.size:
        return None
      grid.append(int(ch))
    return grid

  def score(self, example: dict[str, Any], response_text: str) -> bool:
    grid = self._response_grid(example, response_text)
    if grid is None or not is_valid_solution(grid, self.size):
      return False
    puzzle = self._parse_grid(example["puzzle"], blanks_ok=True)
    return puzzle is not None and all(p in (0, g) for p, g in zip(puzzle, grid, strict=True))

  def validate(self, example: dict[str, Any]) -> None:
    require_keys(example, ("puzzle", "solution"))
    puzzle, solution = example["puzzle"], example["solution"]
    for key, value, blanks_ok in (("puzzle", puzzle, True), ("solution", solution, False)):
      if not isinstance(value, str) or self._parse_grid(value, blanks_ok=blanks_ok) is None:
        allowed = f"0..{self.size}" if blanks_ok else f"1..{self.size}"
        raise ValueError(
            f"{key} must be a string of {self.num_cells} digits in {allowed} for a "
            f"{self.size}x{self.size} sudoku, got {value!r}")
    if not self.score(example, self.target_text(example)):
      raise ValueError("solution is not a valid sudoku grid consistent with the puzzle's givens")

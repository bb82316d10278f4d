"""Unmasking policy for the shipped `toy-addition` model (4+4 digits, gen_length 8, one block):
the toy-sudoku recipe of `configs/policy_sudoku.py` (G=8, clip 0.5, 2 updates, no KL,
multiplicative reward alpha=1, expert steering with one tau=0.9 threshold rollout per group,
lr 1e-3, per-position ratios, 200 steps of 8 prompts).

`configs/policy_addition.py` is the paper's recipe for a model trained with
`configs/addition.py` from scratch (lr 3e-5, 2000 steps); this one fits the CPU budget.
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_policy_sudoku", Path(__file__).with_name("policy_sudoku.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  return _base.get_config().replace(
      model="toy-addition", task="addition", task_options={"min_digits": 4, "max_digits": 4},
      gen_length=8, block_length=None)

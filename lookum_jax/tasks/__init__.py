"""Verifiable toy tasks (Sudoku, Countdown, multi-digit arithmetic, register chains) and their
tokenizer."""

from lookum_jax.tasks.arithmetic import Addition, Multiplication
from lookum_jax.tasks.base import Task, write_jsonl
from lookum_jax.tasks.chain import RegisterChain
from lookum_jax.tasks.countdown import Countdown
from lookum_jax.tasks.registry import TASKS, get_task, task_names
from lookum_jax.tasks.sudoku import Sudoku
from lookum_jax.tasks.tokenizer import (
    build_tokenizer,
    decode_response,
    encode_batch,
    encode_example,
    encode_text,
    left_pad_prompts,
    load_tokenizer,
    model_token_config,
    save_tokenizer,
)

__all__ = [
    "TASKS", "Addition", "Countdown", "Multiplication", "RegisterChain", "Sudoku", "Task",
    "build_tokenizer",
    "decode_response", "encode_batch", "encode_example", "encode_text", "get_task",
    "left_pad_prompts", "load_tokenizer", "model_token_config", "save_tokenizer", "task_names",
    "write_jsonl",
]

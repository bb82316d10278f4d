"""The one decode-and-score path (`lookum_jax.decoding`) on the shipped toy Sudoku model: a
row decodes as it would in any batch, the copies that fill a batch are dropped, responses are
cut at the stop token and scored by the problem set's checker."""

import json
from concurrent.futures import ThreadPoolExecutor

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lookum_jax as lj
from lookum_jax.decoding import (
    decode_and_score,
    encode_prompts,
    fill_batch,
    response_texts,
    score_responses,
)
from lookum_jax.loading import resolve_path
from lookum_jax.tasks import decode_response, get_task

BATCH = 4


@pytest.fixture(scope="module")
def toy():
  """(model, tokenizer, task, problems, prompts, keys, config) of four held-out puzzles."""
  directory = resolve_path("toy-sudoku")
  spec = json.loads((directory / "task.json").read_text())
  task = get_task(spec["task"], **spec["options"])
  problems = task.parse_jsonl(directory / spec["heldout"])[:BATCH]
  tokenizer = lj.load_tokenizer("toy-sudoku")
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(BATCH))
  config = lj.SamplerConfig(gen_length=spec["gen_length"], block_length=spec["block_length"],
                            steps=spec["gen_length"] // 2)
  return (lj.load_model("toy-sudoku"), tokenizer, task, problems,
          encode_prompts(tokenizer, task, problems), keys, config)


def _decode(toy, rows):
  model, tokenizer, task, problems, prompts, keys, config = toy
  return decode_and_score(
      model, tokenizer, task, [problems[i] for i in rows], [prompts[i] for i in rows],
      keys[np.asarray(rows)], config, prompt_length=task.prompt_length, batch_size=BATCH,
      pad_id=tokenizer.pad_token_id)


def test_rows_decode_alike_in_any_batch_and_are_scored_by_the_task(toy):
  model, tokenizer, task, problems, _, _, config = toy
  three = _decode(toy, [0, 1, 2])  # filled with a copy of row 2
  reordered = _decode(toy, [2, 0])  # the same program: filled to BATCH rows as well
  chex.assert_shape(three.response_ids, (3, config.gen_length))
  chex.assert_shape([three.nfe, three.num_steps, three.forward_tokens], (3,))
  assert len(three.texts) == len(three.scores) == 3
  # One key per problem: a problem's tokens, NFE and score follow it, not its row.
  for field in ("response_ids", "nfe", "num_steps", "forward_tokens"):
    chex.assert_trees_all_equal(getattr(reordered, field), getattr(three, field)[[2, 0]])
  assert reordered.texts == [three.texts[2], three.texts[0]]
  assert reordered.scores == [three.scores[2], three.scores[0]]
  for row, problem in enumerate(problems[:3]):
    text = decode_response(tokenizer, three.response_ids[row], model.config.stop_token_ids)
    assert three.texts[row] == text and tokenizer.eos_token not in text
    assert three.scores[row] == task.score(problem, text)
  assert np.all(three.nfe == config.steps) and three.wall_s >= three.compile_s >= 0
  assert three.decode_s == pytest.approx(three.wall_s - three.compile_s)


def test_scoring_in_a_thread_pool_matches_scoring_in_order(toy):
  _, tokenizer, task, problems, _, _, _ = toy
  solutions = [p["solution"] for p in problems]
  texts = solutions[:2] + ["1" * len(solutions[2]), solutions[3][:-1]]
  with ThreadPoolExecutor(max_workers=2) as pool:
    parallel = score_responses(task, problems, texts, pool.map)
  assert parallel == score_responses(task, problems, texts) == [True, True, False, False]
  ids = np.asarray([tokenizer.encode(t + tokenizer.eos_token + "1234",
                                     add_special_tokens=False) for t in solutions[:2]])
  assert response_texts(tokenizer, ids, None) == solutions[:2]  # cut at the first EOS
  with pytest.raises(ValueError, match="4 problems but 3 responses"):
    score_responses(task, problems, texts[:3])


def test_bad_batches_are_refused_before_decoding(toy):
  model, tokenizer, task, problems, prompts, keys, config = toy
  assert fill_batch(["a", "b"], 4) == ["a", "b", "b", "b"]
  for rows in ([], ["a"] * 5):
    with pytest.raises(ValueError, match="a batch needs 1 to batch_size=4 rows"):
      fill_batch(rows, 4)
  with pytest.raises(ValueError, match="one prompt and one key per problem: got 2 problems, "
                                       "2 prompts and 3 keys"):
    decode_and_score(model, tokenizer, task, problems[:2], prompts[:2], keys[:3], config,
                     prompt_length=task.prompt_length, batch_size=BATCH,
                     pad_id=tokenizer.pad_token_id)

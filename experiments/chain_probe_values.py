"""Has a register-chain model learned the rule? Value accuracy with the context visible.

Exports checkpoint STEP of a training run, masks every third value of 64 fresh chains (plus a
random fraction of the other answer tokens) and reports how often the model's argmax restores
the masked values and the masked operations. With nothing else masked a value is a function
of the visible previous value and operation, so a model that has learned the rule scores ~1.

  python experiments/chain_probe_values.py --run experiments/runs/toy-chain --step 2500
"""

from __future__ import annotations

import argparse
import tempfile

import jax.numpy as jnp
import numpy as np

from lookum_jax.loading import load_model
from lookum_jax.tasks import get_task
from lookum_jax.tasks.tokenizer import MASK_TOKEN, build_tokenizer, encode_batch
from lookum_jax.training import mdm


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--run", required=True)
  parser.add_argument("--step", type=int, required=True)
  parser.add_argument("--problems", type=int, default=64)
  args = parser.parse_args()
  config = mdm.read_run_config(args.run)
  task = get_task(config.task, **config.task_options)
  if task.name != "chain" or not task.echo:
    raise SystemExit("this probe reads register chains with echo=True")
  with tempfile.TemporaryDirectory() as tmp:
    model = load_model(mdm.export_checkpoint(args.run, args.step, tmp))
  tokenizer = build_tokenizer()
  batch = encode_batch(task, task.generate(args.problems, 12345), tokenizer)
  tokens = np.asarray(batch["tokens"])
  prompt = tokens.shape[1] - int(batch["response_mask"][0].sum())
  width = task.step_width
  values = prompt + width * np.arange(task.num_steps) + width - 1
  held = values[1::3]
  others = np.setdiff1d(np.arange(prompt, prompt + task.answer_length), values)
  mask_id = tokenizer.convert_tokens_to_ids(MASK_TOKEN)
  rng = np.random.default_rng(0)
  print("other answer tokens masked | masked values right | masked operations right")
  for rate in (0.0, 0.25, 0.5, 0.9):
    masked = np.zeros(tokens.shape, bool)
    masked[:, prompt:] = rng.random((tokens.shape[0], tokens.shape[1] - prompt)) < rate
    masked[:, held] = True
    noisy = np.where(masked, mask_id, tokens)
    predicted = np.asarray(jnp.argmax(model(jnp.asarray(noisy),
                                            jnp.asarray(batch["attention_mask"])), -1))
    right = predicted == tokens
    ops = masked[:, others]
    op_accuracy = (right[:, others] & ops).sum() / max(ops.sum(), 1)
    print(f"{rate:26.2f} | {right[:, held].mean():19.3f} | {op_accuracy:.3f}")


if __name__ == "__main__":
  main()

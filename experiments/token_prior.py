"""Builds PC-Sampler's token-frequency prior for a toy model from its task's training answers.

    python experiments/token_prior.py --model toy-sudoku --out priors/toy-sudoku.npy
    lookum eval --model toy-sudoku --strategy pc_sampler --param prior=priors/toy-sudoku.npy

The prior is the frequency of each token id over `--examples` freshly generated reference
answers (EOS-padded to the model's gen_length), a `[vocab_size]` float32 `.npy` file.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from lookum_jax.loading import load_tokenizer, resolve_path
from lookum_jax.model.config import ModelConfig
from lookum_jax.sampling.strategies.pc_sampler import save_prior, token_frequency_prior
from lookum_jax.tasks.corpus import CORPUS_SEED, answer_token_ids
from lookum_jax.toylab import read_task_spec


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="toy-sudoku", help="a toy model name or directory")
  parser.add_argument("--examples", type=int, default=1000, help="training answers to count")
  parser.add_argument("--seed", type=int, default=CORPUS_SEED)
  parser.add_argument("--out", required=True, help="the .npy file to write")
  args = parser.parse_args(argv)
  model_dir = resolve_path(args.model)
  spec = read_task_spec(model_dir)
  if spec is None:
    raise SystemExit(f"{model_dir} has no task.json: this script needs a toy model.")
  vocab_size = ModelConfig.from_hf_config(
      json.loads((model_dir / "config.json").read_text())).vocab_size
  answers = answer_token_ids(spec.make_task(), load_tokenizer(model_dir), args.examples,
                             spec.gen_length, args.seed)
  prior = token_frequency_prior(answers, vocab_size)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  save_prior(args.out, prior)
  top = np.argsort(-prior)[:5]
  print(f"wrote {args.out}: {vocab_size} tokens, most frequent ids {top.tolist()} "
        f"({', '.join(f'{prior[i]:.3f}' for i in top)})")


if __name__ == "__main__":
  main()

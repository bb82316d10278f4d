"""`lookum generate --model PATH --prompt TEXT`: decode a response to one prompt.

Prints the decoded response, then the NFE and the wall time, with the one-off compile time
reported apart from the decoding time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DTYPES = ("bfloat16", "float32")


HELP = {"generate": "generate a response to one prompt"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
  from lookum_jax.cli import sampler_args

  parser = subparsers.add_parser(
      "generate", help=HELP["generate"],
      description="Decode a response to one prompt with a masked diffusion LM and print it "
                  "with the NFE spent and the wall time (compile time reported apart).")
  parser.add_argument("--model", required=True, metavar="PATH",
                      help="local checkpoint directory (converted or Hugging Face) or the "
                           "name of an embedded model")
  parser.add_argument("--prompt", required=True, metavar="TEXT", help="the prompt")
  parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
  parser.add_argument("--no-chat-template", action="store_true",
                      help="use the prompt as is instead of wrapping it in the tokenizer's "
                           "chat template (Base models have none anyway)")
  parser.add_argument("--dtype", choices=DTYPES, default=None,
                      help="compute dtype (default: the checkpoint's)")
  # None: the toy model's task.json lengths, else 128 tokens (the block: the whole response).
  sampler_args.add_sampler_arguments(parser, gen_length=None, block_length=None)
  parser.set_defaults(func=run_generate)


DEFAULT_GEN_LENGTH = 128


def fill_lengths(args: argparse.Namespace) -> Any:
  """Fills in the response and block lengths the user left out: a toy model's `task.json`
  gives both (when neither is given); else 128 tokens; the block defaults to the whole
  response. Returns the model's task spec (None when it has none)."""
  from lookum_jax.loading import resolve_path
  from lookum_jax.toylab import read_task_spec

  spec = read_task_spec(resolve_path(args.model))
  if args.gen_length is None:
    if spec is not None:
      args.gen_length = spec.gen_length
      if args.block_length is None:
        args.block_length = spec.block_length
    else:
      args.gen_length = DEFAULT_GEN_LENGTH
  if args.block_length is None:
    args.block_length = args.gen_length
  return spec


def run_generate(args: argparse.Namespace) -> int:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lookum_jax import loading
  from lookum_jax.cli import sampler_args
  from lookum_jax.cli.cachecost import cache_warning
  from lookum_jax.sampling import generate
  from lookum_jax.sampling.timing import compile_timer
  from lookum_jax.tasks.tokenizer import refuse_unknown

  spec = fill_lengths(args)
  config = sampler_args.sampler_config_from_args(args)
  warning = cache_warning(Path(args.model).name, spec and spec.cache_cost, config.cache.name,
                          config.cache_refresh)
  if warning:
    print(warning, file=sys.stderr, flush=True)
  policy = sampler_args.load_strategy_policy(config.strategy, args.policy)
  if policy is not None:
    config = config.with_policy(policy)
  dtype = None if args.dtype is None else jnp.dtype(args.dtype)
  model = loading.load_model(args.model, dtype=dtype)
  tokenizer = loading.load_tokenizer(args.model)
  text = (args.prompt if args.no_chat_template
          else loading.apply_chat_template(tokenizer, args.prompt))
  ids = tokenizer(text)["input_ids"]
  refuse_unknown(tokenizer, text, ids)  # never decode from a silently replaced character
  prompt_ids = np.asarray([ids], np.int32)
  with compile_timer() as compile_seconds:
    start = time.perf_counter()
    result = generate(model, prompt_ids, config, jax.random.key(args.seed))
    tokens = np.asarray(result.tokens)  # waits for the device
    wall = time.perf_counter() - start
  response = tokenizer.decode(tokens[0, prompt_ids.shape[1]:], skip_special_tokens=True)
  decode_seconds = wall - compile_seconds[0]
  print(response)
  print(f"--\nnfe: {int(result.nfe[0])}  steps: {int(result.num_steps[0])}  "
        f"tokens: {config.gen_length}  prompt tokens: {prompt_ids.shape[1]}")
  print(f"time: {wall:.2f}s wall = {decode_seconds:.2f}s decoding "
        f"({config.gen_length / max(decode_seconds, 1e-9):.1f} tokens/s) + "
        f"{compile_seconds[0]:.2f}s compile")
  return 0

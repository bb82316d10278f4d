"""`lookum convert HF_DIR OUT_DIR`: a LLaDA / Dream Hugging Face checkpoint to orbax."""

from __future__ import annotations

import argparse
import time

DTYPES = ("bfloat16", "float32")


HELP = {"convert": "convert a LLaDA Hugging Face checkpoint to the orbax format"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
  parser = subparsers.add_parser(
      "convert", help=HELP["convert"],
      description="Convert a local LLaDA Hugging Face checkpoint (config.json + safetensors) "
                  "to lookum-jax's orbax format, copying the tokenizer files. Atomic: on error "
                  "no partial OUT_DIR is left.")
  parser.add_argument("hf_dir", metavar="HF_DIR", help="local Hugging Face checkpoint dir")
  parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write")
  parser.add_argument("--dtype", choices=DTYPES, default="bfloat16",
                      help="dtype to store the params in (default: bfloat16)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace OUT_DIR if it exists (only once the new one is complete)")
  parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
  import jax.numpy as jnp

  from lookum_jax.convert.hf import convert_checkpoint

  start = time.perf_counter()
  out = convert_checkpoint(args.hf_dir, args.out_dir, dtype=jnp.dtype(args.dtype),
                           overwrite=args.overwrite)
  print(f"converted {args.hf_dir} -> {out} ({args.dtype}) in {time.perf_counter() - start:.1f}s")
  return 0

"""The `lookum` command line: every subcommand, one module each.

    lookum generate | eval | demo | convert | bench | summarize | train mdm | train policy

The top floor: it imports the library and `policy_rl`, and nothing below imports it. Each
module registers its parser cheaply and imports JAX only when its command runs, so `--help`
is fast. Strategy names are the library's one table
(`lookum_jax.sampling.strategies.STRATEGIES`).
"""

from __future__ import annotations

import argparse
import sys

from lookum_jax.cli import bench, convert, evaluate, generate, train


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="lookum", description="lookum-jax: decode masked diffusion LMs (LLaDA) in JAX.")
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  generate.add_parser(subparsers)
  evaluate.add_parsers(subparsers)
  convert.add_parser(subparsers)
  bench.add_parsers(subparsers)
  train.add_parser(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Runs one subcommand; bad input is reported in one line with exit status 2."""
  args = build_parser().parse_args(argv)
  command = " ".join(filter(None, (args.command, getattr(args, "kind", None))))
  try:
    return args.func(args)
  except (ValueError, OSError) as e:
    print(f"lookum {command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"\nlookum {command}: interrupted.", file=sys.stderr)
    return 130

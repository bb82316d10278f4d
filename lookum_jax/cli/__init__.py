"""The `lookum` command line: every subcommand, one module each.

    lookum generate | eval | demo | convert | bench | summarize | train mdm | train policy

The top floor: it imports the library and `policy_rl`, and nothing below imports it. Only the
module of the command being run registers its full parser (the others are listed by name), and
JAX is imported only when a command runs, so `lookum --help` is fast. Strategy names go through
the one parser (`lookum_jax.parsing`); `sampler_args` registers `policy_rl`'s with it
(`policy_rl.register_strategies`).
"""

from __future__ import annotations

import argparse
import sys

from lookum_jax.cli import bench, convert, evaluate, generate, train

# Each module registers its commands (`HELP` names them); in listing order.
_MODULES = (
    (generate, generate.add_parser), (evaluate, evaluate.add_parsers),
    (convert, convert.add_parser), (bench, bench.add_parsers), (train, train.add_parser))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
  """The `lookum` parser. With `command`, only that command's module registers its full
  parsers (importing what they need); the others are listed by name and help alone, so
  `lookum --help` imports no JAX."""
  parser = argparse.ArgumentParser(
      prog="lookum", description="lookum-jax: decode masked diffusion LMs (LLaDA) in JAX.")
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for module, register in _MODULES:
    if command is None or command in module.HELP:
      register(subparsers)
    else:
      for name, summary in module.HELP.items():
        subparsers.add_parser(name, help=summary, add_help=False)
  return parser


def _command_word(argv: list[str]) -> str:
  """The command `argv` names ("" when none: `lookum --help`)."""
  return next((word for word in argv if not word.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
  """Runs one subcommand; bad input is reported in one line with exit status 2."""
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser(_command_word(argv)).parse_args(argv)
  command = " ".join(filter(None, (args.command, getattr(args, "kind", None))))
  try:
    return args.func(args)
  except (ValueError, OSError) as e:
    print(f"lookum {command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"\nlookum {command}: interrupted.", file=sys.stderr)
    return 130

"""`lookum bench` (a sampler on a benchmark with a converted LLaDA / Dream model, resumably)
and `lookum summarize` (result files as the papers' table and accuracy-vs-NFE plots)."""

from __future__ import annotations

import argparse
from pathlib import Path

BENCH_DESCRIPTION = """\
Evaluate a sampler on a benchmark with a converted LLaDA / Dream model, resumably. The run is a
config file (--config configs/FILE.py) or a preset of the papers' grid (--preset
model:benchmark:sampler, e.g. llada:gsm8k:lookum2; --list-presets shows them all). Appends one
JSONL record per problem to --out; a rerun skips the problems already there. Uses every
visible device: mesh_model of them for tensor parallelism, the rest split the batch.
Multi-host: start one process per host (SLURM/MPI, or JAX_COORDINATOR_ADDRESS +
JAX_NUM_PROCESSES + JAX_PROCESS_ID)."""


HELP = {"bench": "evaluate a sampler on a benchmark (GSM8K, MATH500, HumanEval, ...)",
        "summarize": "result files (bench JSONL, eval JSON) as a table and accuracy-vs-NFE "
                     "plots"}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
  bench = subparsers.add_parser(
      "bench", help=HELP["bench"],
      description=BENCH_DESCRIPTION)
  run = bench.add_mutually_exclusive_group(required=True)
  run.add_argument("--config", help="a config file with get_config() returning a "
                                    "BenchmarkConfig")
  run.add_argument("--preset", metavar="MODEL:BENCHMARK:SAMPLER",
                   help="a preset of the papers' grid, e.g. llada:gsm8k:lookum2")
  run.add_argument("--list-presets", action="store_true", help="print the preset names")
  bench.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                     help="set a config field, e.g. model_path=DIR, sampler.steps=128, "
                          "sampler.params.paths=3, benchmark_options.timeout_s=5 "
                          "(repeatable)")
  bench.add_argument("--limit", type=int, help="only the first N problems of the data file")
  bench.add_argument("--out", help="results JSONL (default: results/benchmarks/<run>.jsonl)")
  bench.add_argument("--policy", help="a trained policy directory (strategy policy); same "
                                      "as --override policy_path=DIR")
  bench.add_argument("--report-memory", action="store_true",
                     help="print device memory stats after loading and at the end")
  bench.add_argument("--no-progress", action="store_true", help="no progress bar")
  bench.set_defaults(func=run_bench)

  summarize = subparsers.add_parser(
      "summarize", help=HELP["summarize"],
      description="Summarize benchmark result files in the papers' layout: per model and "
                  "generation length, a sampler x benchmark table of 'accuracy % (mean NFE) "
                  "[problems]'; with --plots, one accuracy-vs-NFE plot (PNG and PDF) per "
                  "benchmark. Eval records (lookum eval --out, lookum demo's results.json) "
                  "are shown as one table of samplers and one plot.")
  summarize.add_argument("results", nargs="+", metavar="RESULTS",
                         help="bench results .jsonl files, eval .json records (lookum eval "
                              "--out, the demo's results.json), or directories of them")
  summarize.add_argument("--plots", metavar="DIR", help="write accuracy-vs-NFE plots here")
  summarize.add_argument("--json", metavar="FILE", help="also write the summaries as JSON")
  summarize.set_defaults(func=run_summarize)


def bench_config(args: argparse.Namespace):
  """The run's `BenchmarkConfig`: the file or preset, then `--policy` and `--override`s."""
  from lookum_jax.benchmarks import presets
  from lookum_jax.benchmarks.config import apply_overrides, load_config

  config = presets.preset(args.preset) if args.preset else load_config(args.config)
  overrides = list(args.override)
  if args.policy:
    overrides.append(f"policy_path={args.policy}")
  return apply_overrides(config, overrides)


def run_bench(args: argparse.Namespace) -> int:
  if args.list_presets:
    from lookum_jax.benchmarks.presets import preset_names

    print("\n".join(preset_names()))
    return 0
  from lookum_jax.model.sharding import maybe_initialize_distributed

  maybe_initialize_distributed()  # before anything touches a JAX backend
  from lookum_jax.benchmarks.runner import run_benchmark
  from lookum_jax.cli.outputs import probe_file

  config = bench_config(args)
  out = args.out or str(Path("results") / "benchmarks" / f"{config.run_name}.jsonl")
  probe_file(out, "--out")  # a real write, before the model loads
  run_benchmark(config, out, limit=args.limit, progress=not args.no_progress,
                report_memory=args.report_memory)
  return 0


def split_results(paths: list[str]) -> tuple[list[str], list[Path]]:
  """(benchmark JSONL files and folders holding them, eval JSON files): `lookum eval --out`
  records and the demo's `results.json`, given as files or found in the folders given."""
  bench, evals = [], []
  for path in map(Path, paths):
    if path.is_dir():
      if any(path.glob("*.jsonl")):
        bench.append(str(path))
      evals += sorted(path.glob("*.json"))
    elif path.suffix == ".json":
      evals.append(path)
    else:
      bench.append(str(path))
  return bench, evals


def read_eval_results(files: list[Path]) -> list:
  """The `EvalResult`s stored in eval JSON files (one record, or a list as the demo writes)."""
  import dataclasses
  import json

  from lookum_jax.evaluation import EvalResult

  names = {f.name for f in dataclasses.fields(EvalResult)}
  results = []
  for file in files:
    try:
      value = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"{file}: not a readable eval record ({e}).") from e
    for item in value if isinstance(value, list) else [value]:
      if not (isinstance(item, dict) and {"sampler", "accuracy", "ci95"} <= set(item)):
        raise ValueError(f"{file}: not an eval record (lookum eval --out, or the demo's "
                         "results.json).")
      fields = {k: v for k, v in item.items() if k in names}
      fields["ci95"] = tuple(fields["ci95"])
      fields.setdefault("compile_time_s", 0.0)
      results.append(EvalResult(**fields))
  return results


def run_summarize(args: argparse.Namespace) -> int:
  bench_paths, eval_files = split_results(args.results)
  evals = read_eval_results(eval_files)
  if not bench_paths and not evals:
    raise ValueError(f"no results in {', '.join(args.results)} (bench .jsonl files, eval .json "
                     "records, or folders of them).")
  if evals:
    from lookum_jax.evaluation import format_table

    print(format_table(evals))
    if args.plots:
      from lookum_jax.plotting import plot_accuracy_vs_nfe

      tasks = sorted({r.task for r in evals})
      Path(args.plots).mkdir(parents=True, exist_ok=True)
      out = Path(args.plots) / "eval_accuracy_vs_nfe.png"
      plot_accuracy_vs_nfe(evals, out, title=", ".join(tasks))
      print(f"wrote {out} and {out.with_suffix('.pdf')}")
  if not bench_paths:
    return 0
  from lookum_jax.benchmarks import summary

  runs = summary.group_runs(summary.read_result_files(bench_paths))
  print(summary.format_table(runs))
  if args.json:
    with open(args.json, "w") as f:
      f.write(summary.runs_to_json(runs) + "\n")
    print(f"wrote {args.json}")
  if args.plots:
    for path in summary.plot_runs(runs, args.plots):
      print(f"wrote {path}")
  return 0

"""Ships a trained toy MDM inside the package: `load_model("<name>")` then needs no download.

Copies the run's exported model into `lookum_jax/assets/<name>/`, writes `task.json`, a
held-out set that excludes every puzzle/question the training stream produced, evaluates
low-confidence decoding at 1, 2 and 4 tokens per step on it, and writes a model card
(`MODEL_CARD.md`) with the training command, time and evaluation.

  python experiments/package_toy_model.py --run runs/sudoku4 --name toy-sudoku \
      --config configs/sudoku4.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import jax

from lookum_jax.evaluation import evaluate, format_table
from lookum_jax.loading import load_model, load_tokenizer
from lookum_jax.sampling import SamplerConfig
from lookum_jax.tasks import get_task, write_jsonl
from lookum_jax.toylab import TaskSpec, write_task_spec
from lookum_jax.training.data import step_seed

ASSETS = Path(__file__).resolve().parents[1] / "lookum_jax" / "assets"
HELDOUT_SEED = 987_654_321  # never a training seed: training seeds come from step_seed


def example_key(example: dict) -> str:
  return json.dumps({k: example[k] for k in sorted(example) if k != "solution"}, sort_keys=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--run", required=True,
                      help="training run directory (lookum train mdm --out)")
  parser.add_argument("--name", required=True, help="asset name, e.g. toy-sudoku")
  parser.add_argument("--config", required=True, help="the config file the run used")
  parser.add_argument("--block-length", type=int, help="default: gen_length (full diffusion)")
  parser.add_argument("--heldout", type=int, default=1000)
  parser.add_argument("--eval-limit", type=int,
                      help="evaluate on the first N held-out problems only (long answers at one "
                      "token per step are slow on a CPU); default: all of them")
  parser.add_argument("--eval-batch-size", type=int, default=250)
  parser.add_argument("--step", type=int,
                      help="ship checkpoint STEP (exported by lookum train mdm --export-step "
                      "STEP) instead of the run's final model")
  args = parser.parse_args()

  run = Path(args.run)
  train_config = json.loads((run / "train_config.json").read_text())
  metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  if args.step is not None:
    metrics = [m for m in metrics if m["step"] <= args.step]
  model_dir = run / ("model" if args.step is None else f"model-step{args.step}")
  trained_steps = train_config["num_steps"] if args.step is None else args.step
  task = get_task(train_config["task"], **train_config["task_options"])
  gen_length = train_config["gen_length"] or task.gen_length
  block_length = args.block_length or gen_length

  seen = set()
  for step in range(trained_steps):
    for example in task.generate(train_config["batch_size"],
                                 step_seed(train_config["seed"], step)):
      seen.add(example_key(example))
  candidates = task.generate(4 * args.heldout, HELDOUT_SEED)
  unseen, keys = [], set()
  for ex in candidates:
    k = example_key(ex)
    if k not in seen and k not in keys:
      unseen.append(ex)
      keys.add(k)
  heldout = unseen[:args.heldout]
  if len(heldout) < args.heldout:
    raise ValueError(f"only {len(heldout)} unseen examples among {len(candidates)}")

  dest = ASSETS / args.name
  if dest.exists():
    shutil.rmtree(dest)
  shutil.copytree(model_dir, dest)
  write_jsonl(heldout, dest / "heldout.jsonl")
  write_task_spec(dest, TaskSpec(task=task.name, options=dict(train_config["task_options"]),
                                 gen_length=gen_length, block_length=block_length,
                                 heldout="heldout.jsonl"))

  model, tokenizer = load_model(dest), load_tokenizer(dest)
  evaluated = heldout[:args.eval_limit]
  results = []
  for tps in (1, 2, 4):
    steps = max(gen_length // tps, gen_length // block_length)
    config = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=steps)
    results.append(evaluate(model, tokenizer, task, evaluated, config, jax.random.key(0),
                            batch_size=args.eval_batch_size, label=f"low_confidence {tps}/step"))
  table = format_table(results)
  step_accuracy = getattr(task, "step_accuracy", None)  # tasks with intermediate steps
  if step_accuracy is not None:
    lines = []
    for r in results:
      credit = [step_accuracy(ex, rec["response"])
                for ex, rec in zip(evaluated, r.records, strict=True)]
      lines.append(f"{r.label:<28} {sum(credit) / len(credit):.3f}")
    table += "\n\nper-step accuracy (fraction of intermediate steps right):\n" + "\n".join(lines)
  print(table)
  train_s = max(m.get("elapsed_s", 0.0) for m in metrics)
  train_command = f"lookum train mdm --config {args.config} --out {args.run}"
  schedule_note = ""
  if args.step is not None:
    train_command += (f" --stop-after {args.step}\n    lookum train mdm "
                      f"--config {args.config} --out {args.run} --export-step {args.step}")
    schedule_note = (f"; checkpoint {args.step} of a {train_config['num_steps']}-step "
                     "schedule")
  final = metrics[-1]
  eval_scope = (f"the first {len(evaluated)}" if len(evaluated) < len(heldout) else "all")
  extra_flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (
      ("block_length", args.block_length),
      ("heldout", None if args.heldout == 1000 else args.heldout),
      ("eval_limit", args.eval_limit)) if v is not None)
  eval_flag = f" --limit {len(evaluated)}" if len(evaluated) < len(heldout) else ""
  card = f"""# {args.name}

A LLaDA-architecture masked diffusion model ({model.config.num_params() / 1e6:.2f}M parameters,
d_model {model.config.d_model}, {model.config.n_layers} layers) trained on {task.name}
({json.dumps(train_config['task_options'])}), shipped with lookum-jax.

Produced by (seed {train_config['seed']}, {trained_steps} steps of batch
{train_config['batch_size']}{schedule_note}):

    {train_command}
    python experiments/package_toy_model.py --run {args.run} --name {args.name} \\
        --config {args.config}{'' if args.step is None else f' --step {args.step}'}{extra_flags}

Training time: {train_s / 60:.1f} min on 2 shared CPU cores (final loss {final['loss']:.3f},
masked-token accuracy {final.get('masked_acc', float('nan')):.3f}).

Held-out set: `heldout.jsonl`, {len(heldout)} problems generated with seed {HELDOUT_SEED},
excluding every problem of the training stream. gen_length {gen_length}, block_length
{block_length}. Evaluation on {eval_scope} (`lookum eval --model {args.name} --steps S{eval_flag}`,
temperature 0):

```
{table}
```

Evaluated on {time.strftime('%Y-%m-%d')}.
"""
  (dest / "MODEL_CARD.md").write_text(card)
  size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
  print(f"shipped {dest} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
  main()

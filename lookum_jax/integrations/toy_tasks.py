"""The toy lab's tasks as local lm-eval tasks: a YAML, a JSONL of problems, and a scorer.

  python -m lookum_jax.integrations.toy_tasks OUT_DIR --model toy-sudoku --limit 50

writes `OUT_DIR/<name>.yaml` (generate_until), `OUT_DIR/<name>.jsonl` and
`OUT_DIR/<name>_scoring.py` for `--include_path OUT_DIR`. Everything is local: lm-eval reads
the problems with the `json` builder of `datasets`, and scores each response with the task's
own exact checker (`solved`, what `lookum eval` calls accuracy) and as `exact_match` against
the reference. Needs no lm_eval import itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookum_jax.loading import resolve_path
from lookum_jax.tasks import get_task
from lookum_jax.toylab import read_task_spec

_YAML = """\
# Written by lookum_jax.integrations.toy_tasks: {count} {task} problems from {source}.
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: prompt  # feature names: the raw texts
doc_to_target: target
generation_kwargs:
  until: []
  do_sample: false
process_results: !function {name}_scoring.process_results
metric_list:
  - metric: solved
    aggregation: mean
    higher_is_better: true
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_SCORING = """\
# Written by lookum_jax.integrations.toy_tasks: lm-eval loads this file by path.
from lookum_jax.integrations.toy_tasks import process_results  # noqa: F401
"""


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
  """lm-eval's per-document metrics: `solved` by the task's exact checker (any correct
  answer), `exact_match` against the reference response."""
  task = get_task(doc["task"], **doc["task_options"])
  response = results[0]
  return {"solved": float(task.score(doc["example"], response)),
          "exact_match": float(doc["target"] is not None and response == doc["target"])}


def write_task(out_dir: str | Path, model: str = "toy-sudoku", *, data: str | None = None,
               limit: int | None = None, name: str | None = None) -> Path:
  """Writes a toy model's task (its held-out set, or `data`) as a local lm-eval task.

  Returns:
    the YAML's path; the task is named `name` (default: the model's, with `_`).
  """
  model_dir = resolve_path(model)
  spec = read_task_spec(model_dir)
  if spec is None:
    raise ValueError(f"{model_dir} has no task.json: not a toy lab model.")
  task = spec.make_task()
  source = Path(data) if data is not None else model_dir / (spec.heldout or "")
  if not source.is_file():
    raise ValueError(f"no problems: {source} is not a file; pass data=FILE.jsonl.")
  if limit is not None and limit <= 0:
    raise ValueError(f"limit must be positive, got {limit}.")
  examples = task.parse_jsonl(source)[:limit]
  name = name or model_dir.name.replace("-", "_")
  out_dir = Path(out_dir).absolute()
  out_dir.mkdir(parents=True, exist_ok=True)
  data_path = out_dir / f"{name}.jsonl"
  with open(data_path, "w", encoding="utf-8") as f:
    for example in examples:
      doc = {"prompt": task.prompt_text(example), "target": task.target_text(example),
             "task": spec.task, "task_options": spec.options, "example": example}
      f.write(json.dumps(doc, separators=(",", ":")) + "\n")
  yaml_path = out_dir / f"{name}.yaml"
  yaml_path.write_text(_YAML.format(count=len(examples), task=spec.task, source=source.name,
                                    name=name, data=json.dumps(str(data_path))))
  (out_dir / f"{name}_scoring.py").write_text(_SCORING)
  return yaml_path


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m lookum_jax.integrations.toy_tasks",
      description="Write a toy model's held-out problems as a local lm-eval task "
                  "(for lm_eval --include_path OUT_DIR).")
  parser.add_argument("out_dir")
  parser.add_argument("--model", default="toy-sudoku", help="a shipped toy model or its dir")
  parser.add_argument("--data", help="problems as JSONL in the task's format (default: the "
                      "model's held-out set)")
  parser.add_argument("--limit", type=int, help="the first N problems")
  parser.add_argument("--name", help="task name (default: the model's)")
  args = parser.parse_args(argv)
  path = write_task(args.out_dir, args.model, data=args.data, limit=args.limit, name=args.name)
  print(f"wrote {path} (task {path.stem})")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""Transfer of learned unmasking policies: to another dLLM, to another task, to a longer response.

Each setting is a `policy_pareto.py` study (threshold swept over tau and low_confidence at fixed
tokens per step as the reference front, the policies in deterministic / sampled / scaled modes)
written to OUT/<setting>/; the policies' comparisons with the threshold front are then collected
into OUT/summary.json and OUT/summary.csv. Reruns only evaluate what is missing.

Settings:
  seed1           the toy-sudoku recipe retrained with seed 1 (`--seed1-model`), on the
                  toy-sudoku held-out set; the sudoku policy was trained on the seed-0 model.
  addition        toy-addition (out of domain for the sudoku policy; the addition policy is
                  the in-domain reference).
  addition-gen16  toy-addition decoded with gen_length 16 instead of its 8 (one block), i.e.
                  twice the response length both the model and the policies were trained on.
  gen16-model     an addition MDM trained with responses EOS-padded to 16 (`--gen16-model`,
                  `lookum train mdm --config configs/addition.py --override gen_length=16`),
                  decoded at gen_length 16: a longer response the model can produce, for
                  policies trained at gen_length 8 (addition) or 16 (sudoku).
  chain-on-sudoku    the toy-chain policy (`--chain-policy`, trained on 128-token chains under
                     full diffusion) on the toy-sudoku held-out set; the sudoku policy is the
                     in-domain reference.
  chain-on-addition  the toy-chain policy on the toy-addition held-out set; the addition
                     policy is the in-domain reference.

    python experiments/policy_transfer.py --settings addition seed1 addition-gen16 gen16-model \
        --addition-policy runs/policy/addition/alpha1/policy \
        --out experiments/results/policy_transfer
    python experiments/policy_transfer.py --settings chain-on-sudoku chain-on-addition \
        --chain-policy lookum_jax/assets/toy-chain/policy --out experiments/results/policy_transfer
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import policy_pareto
from package_toy_model import example_key

from lookum_jax.tasks import get_task
from lookum_jax.toylab import open_task_model
from lookum_jax.training.data import step_seed

ASSETS = Path(__file__).resolve().parents[1] / "lookum_jax" / "assets"
SETTINGS = ("seed1", "addition", "addition-gen16", "gen16-model", "chain-on-sudoku",
            "chain-on-addition")


def setting_args(name: str, args: argparse.Namespace) -> list[str]:
  """policy_pareto.py arguments of one setting (without --out and the policies)."""
  if name == "seed1":
    return ["--model", args.seed1_model, "--task", "sudoku", "--task-option", "size=4",
            "--task-option", "num_blanks=10",
            "--data", str(ASSETS / "toy-sudoku" / "heldout.jsonl")]
  if name in ("addition", "chain-on-addition"):
    return ["--model", "toy-addition"]
  if name == "chain-on-sudoku":
    return ["--model", "toy-sudoku"]
  if name == "addition-gen16":
    return ["--model", "toy-addition", "--gen-length", "16"]
  if name == "gen16-model":
    return ["--model", args.gen16_model, "--task", "addition", "--task-option", "min_digits=4",
            "--task-option", "max_digits=4", "--gen-length", "16",
            "--data", str(ASSETS / "toy-addition" / "heldout.jsonl")]
  raise ValueError(f"unknown setting {name!r}; choose from {SETTINGS}")


def setting_policies(name: str, args: argparse.Namespace) -> list[str]:
  """policy_pareto.py --policy arguments of one setting: the transferred policy first, then the
  in-domain reference where there is one."""
  if name.startswith("chain-on-"):
    if not Path(args.chain_policy).is_dir():
      raise SystemExit(f"{name}: no chain policy at {args.chain_policy} (--chain-policy DIR).")
    own = args.sudoku_policy if name == "chain-on-sudoku" else args.addition_policy
    return ["--policy", f"chain={args.chain_policy}", "--policy",
            f"{name.removeprefix('chain-on-')}={own}"]
  policies = ["--policy", f"sudoku={args.sudoku_policy}"]
  if name != "seed1" and Path(args.addition_policy).is_dir():
    policies += ["--policy", f"addition={args.addition_policy}"]
  return policies


def training_overlap(train_run: Path, model: str, data: str | None, limit: int) -> dict:
  """How many evaluated problems the MDM run's training stream produced (the shipped held-out
  sets exclude only the seed-0 stream)."""
  config = json.loads((train_run / "train_config.json").read_text())
  task = get_task(config["task"], **config["task_options"])
  lab_examples = open_task_model(model, task_name=config["task"],
                                 task_options=config["task_options"], data=data,
                                 limit=limit).examples
  wanted = {example_key(e) for e in lab_examples}
  seen = set()
  for step in range(config["num_steps"]):
    for example in task.generate(config["batch_size"], step_seed(config["seed"], step)):
      key = example_key(example)
      if key in wanted:
        seen.add(key)
  return {"train_run": str(train_run), "evaluated": len(wanted), "in_training_stream": len(seen)}


def summarize(out: Path, settings: list[str]) -> list[dict]:
  rows = []
  for name in settings:
    path = out / name / "comparisons.json"
    if not path.exists():
      continue
    for c in json.loads(path.read_text()):
      if c["against"] != "threshold":
        continue
      rows.append({"setting": name, "policy": c["policy"], "accuracy": c["accuracy"],
                   "mean_nfe": c["mean_nfe"],
                   "threshold_acc_at_policy_nfe": c["acc_at_policy_nfe"],
                   "threshold_nfe_at_policy_acc": c["nfe_at_policy_acc"],
                   "nearest_threshold": c["nearest"], "nearest_threshold_nfe": c["nearest_nfe"],
                   "paired_diff": c.get("paired_diff"),
                   "paired_diff_ci95": c.get("paired_diff_ci95")})
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
  parser.add_argument("--sudoku-policy", default=str(ASSETS / "toy-sudoku" / "policy"))
  parser.add_argument("--addition-policy", default=str(ASSETS / "toy-addition" / "policy"),
                      help="in-domain reference on toy-addition (skipped if absent)")
  parser.add_argument("--chain-policy", default=str(ASSETS / "toy-chain" / "policy"),
                      help="the toy-chain policy, for the chain-on-* settings")
  parser.add_argument("--seed1-model", default="runs/pilot/sudoku4_seed1/model",
                      help="toy-sudoku retrained with seed 1 (lookum train mdm --override seed=1)")
  parser.add_argument("--gen16-model", default="runs/addition_gen16/model-step2000",
                      help="addition MDM trained with gen_length 16 (same seed and data as "
                           "toy-addition, so its held-out set applies)")
  parser.add_argument("--seed1-run", default=None,
                      help="its run directory, to count held-out problems in its training "
                           "stream (default: the parent of --seed1-model)")
  parser.add_argument("--modes", nargs="+", default=["deterministic", "sample", "scaled"])
  parser.add_argument("--betas", nargs="+", type=float, default=[0.5, 2.0])
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--out", default="experiments/results/policy_transfer")
  args = parser.parse_args(argv)

  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  extra = {}
  for name in args.settings:
    argv_setting = setting_args(name, args) + setting_policies(name, args) + [
        "--limit", str(args.limit), "--gammas", "--modes", *args.modes,
        "--betas", *map(str, args.betas), "--out", str(out / name)]
    print(f"== {name}: policy_pareto.py {' '.join(argv_setting)}", flush=True)
    policy_pareto.main(argv_setting)
    if name == "seed1":
      run = Path(args.seed1_run) if args.seed1_run else Path(args.seed1_model).parent
      extra["seed1_overlap"] = training_overlap(
          run, args.seed1_model, str(ASSETS / "toy-sudoku" / "heldout.jsonl"), args.limit)
      print(f"seed1: {extra['seed1_overlap']}", flush=True)

  rows = summarize(out, list(SETTINGS))
  previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() \
      else {}
  extra = {**previous.get("notes", {}), **extra}
  (out / "summary.json").write_text(json.dumps({"rows": rows, "notes": extra}, indent=1) + "\n")
  with open(out / "summary.csv", "w") as f:
    f.write("setting,policy,accuracy,mean_nfe,threshold_acc_at_policy_nfe,"
            "threshold_nfe_at_policy_acc,paired_diff_vs_nearest_threshold\n")
    fmt = lambda v: "" if v is None else f"{v:.4f}"
    for r in rows:
      f.write(f"{r['setting']},{r['policy']},{r['accuracy']:.4f},{r['mean_nfe']:.3f},"
              f"{fmt(r['threshold_acc_at_policy_nfe'])},{fmt(r['threshold_nfe_at_policy_acc'])},"
              f"{fmt(r['paired_diff'])}\n")
  print(f"wrote {out}/summary.json and summary.csv")
  return 0


if __name__ == "__main__":
  sys.exit(main())

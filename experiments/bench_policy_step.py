"""Seconds per GRPO step of a policy training config, split into rollout, scoring and update,
with the XLA compiles counted per step (issue 22: where a step's time goes).

    python experiments/bench_policy_step.py --config configs/policy_chain.py \
        --override cache=none --warmup 1 --steps 3

Runs `--warmup` train steps (compiles), then `--steps` timed steps on the config's own
prompts and keys (steps `warmup..warmup+steps-1` of a fresh run; no checkpoints are
written). Each phase ends with `block_until_ready`, so its time is its own; wall and process
CPU seconds are both recorded (on a shared machine the CPU seconds vary less). Prints one JSON
line per step and a summary line; `--out FILE` appends the summary as JSON. Works with the
trainer before this change too (it only calls `PolicyTrainer.rollout/rewards/update`).
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import jax
import numpy as np

from policy_rl.config import apply_overrides, load_config
from policy_rl.train import PolicyTrainer, load_dllm

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--override", nargs="*", default=[])
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--label", default="")
  parser.add_argument("--out")
  args = parser.parse_args(argv)
  config = apply_overrides(load_config(args.config), args.override)
  compiles: collections.Counter = collections.Counter()
  compile_s = [0.0]

  def listener(event, duration, **kwargs):
    if event == COMPILE_EVENT:
      compiles[kwargs.get("fun_name", "?")] += 1
      compile_s[0] += duration

  jax.monitoring.register_event_duration_secs_listener(listener)
  trainer = PolicyTrainer(config, load_dllm(config))
  state = trainer.init_state()
  records = []
  for step in range(args.warmup + args.steps):
    compiles.clear()
    compile_s[0] = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    rollout = trainer.rollout(state, step)
    jax.block_until_ready(rollout.trajectory)
    t1, c1 = time.perf_counter(), time.process_time()
    rewards, correct = trainer.rewards(rollout)
    jax.block_until_ready(rewards)
    t2, c2 = time.perf_counter(), time.process_time()
    state, metrics = trainer.update(state, rollout, rewards)
    jax.block_until_ready(state)
    t3, c3 = time.perf_counter(), time.process_time()
    valid = np.asarray(rollout.trajectory.valid)
    record = {"step": step, "warmup": step < args.warmup, "total_s": t3 - t0,
              "rollout_s": t1 - t0, "score_s": t2 - t1, "update_s": t3 - t2,
              "cpu_s": c3 - c0, "rollout_cpu_s": c1 - c0, "update_cpu_s": c3 - c2,
              "compiles": sum(compiles.values()), "compile_s": compile_s[0],
              "compiled": dict(compiles), "accuracy": float(np.mean(correct)),
              "nfe": float(np.mean(np.asarray(rollout.result.nfe))),
              "max_steps": int(np.max(np.asarray(rollout.result.num_steps))),
              "trajectory_steps": int(valid.shape[1]), "valid_pairs": int(valid.sum()),
              "pairs": int(valid.size), "loss": metrics.get("loss")}
    records.append(record)
    print(json.dumps(record), flush=True)
  timed = [r for r in records if not r["warmup"]]
  summary = {"label": args.label, "config": args.config, "override": args.override,
             "steps": len(timed),
             **{f"mean_{k}": float(np.mean([r[k] for r in timed]))
                for k in ("total_s", "rollout_s", "score_s", "update_s", "cpu_s",
                          "rollout_cpu_s", "update_cpu_s", "compiles", "nfe",
                          "valid_pairs", "pairs")}}
  print("SUMMARY " + json.dumps(summary), flush=True)
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps({**summary, "records": records}) + "\n")


if __name__ == "__main__":
  main()

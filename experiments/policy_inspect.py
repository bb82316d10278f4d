"""What a trained unmasking policy learned: its unmask probability against the dLLM's
confidence, by decoding step, on held-out problems.

Decodes the first N held-out problems with the policy (deterministic mode, trajectory
recorded), re-scores every eligible position of every step, and writes a scatter plot of
p(unmask) against confidence coloured by step, plus a JSON summary: per step, the confidence
above which the policy commits (the smallest committed and the largest skipped confidence),
and how often its decision differs from a tau threshold rule.

    python experiments/policy_inspect.py --policy lookum_jax/assets/toy-sudoku/policy \
        --limit 200 --out experiments/results/policy_inspect
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

import policy_rl
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.tasks import encode_text, left_pad_prompts
from lookum_jax.toylab import open_task_model
from policy_rl.strategy import unmask_probability


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--policy", required=True)
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=200)
  parser.add_argument("--block-length", type=int, default=None)
  parser.add_argument("--taus", nargs="+", type=float, default=[0.8, 0.9, 0.95])
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)

  lab = open_task_model(args.model, limit=args.limit)
  policy = policy_rl.load_policy(args.policy)
  gen_length = lab.spec.gen_length
  params = policy_rl.Policy(mode="deterministic", features=policy.config.features,
                            record=True)
  config = SamplerConfig(gen_length=gen_length,
                         block_length=args.block_length or lab.spec.block_length,
                         steps=gen_length, strategy=params)
  prompts = [encode_text(lab.tokenizer, lab.task.prompt_text(ex)) for ex in lab.examples]
  ids, mask = left_pad_prompts(prompts, lab.task.prompt_length, lab.tokenizer.pad_token_id)
  result = generate(lab.model, ids, config.with_policy(policy), jax.random.key(0), mask)
  traj = result.strategy_state.trajectory.truncate(int(result.num_steps.max()))
  b, s, t = traj.actions.shape
  # The policy saw the response window only (no prompt positions, no padding): no mask.
  logits = policy(traj.step_inputs()).reshape(b, s, t)
  prob = np.asarray(unmask_probability(params, logits))
  decided = np.asarray(traj.eligible & traj.valid[..., None])
  conf = np.asarray(traj.token_features[..., policy.config.features.index("confidence")])
  step = np.broadcast_to(np.arange(s)[None, :, None], (b, s, t))
  p, c, k = prob[decided], conf[decided], step[decided]
  commit = p >= 0.5

  summary = {"policy": args.policy, "problems": b, "decisions": int(decided.sum()),
             "mean_steps": float(np.mean(result.num_steps)), "per_step": [],
             "disagreement_with_threshold": {}}
  for i in range(s):
    sel = k == i
    if not sel.any():
      continue
    summary["per_step"].append({
        "step": i, "decisions": int(sel.sum()), "committed": int(commit[sel].sum()),
        "min_committed_confidence": float(c[sel & commit].min()) if (sel & commit).any()
        else None,
        "max_skipped_confidence": float(c[sel & ~commit].max()) if (sel & ~commit).any()
        else None})
  for tau in args.taus:
    summary["disagreement_with_threshold"][f"{tau:g}"] = float(np.mean(commit != (c >= tau)))
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "policy_inspect.json").write_text(json.dumps(summary, indent=1) + "\n")

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  points = ax.scatter(c, p, c=k, s=4, cmap="viridis", alpha=0.5)
  fig.colorbar(points, ax=ax, label="decoding step")
  for tau in args.taus:
    ax.axvline(tau, color="grey", lw=0.8, ls="--")
  ax.axhline(0.5, color="k", lw=0.6)
  ax.set_xlabel("dLLM confidence (top-1 probability) of an eligible position")
  ax.set_ylabel("policy unmask probability")
  ax.set_title(f"{Path(args.policy).name}: {b} held-out problems, dashed: tau "
               f"{', '.join(f'{x:g}' for x in args.taus)}", fontsize=9)
  fig.tight_layout()
  fig.savefig(out / "policy_inspect.png")
  plt.close(fig)
  print(json.dumps({k: v for k, v in summary.items() if k != "per_step"}, indent=1))
  for row in summary["per_step"]:
    print(row)
  return 0


if __name__ == "__main__":
  sys.exit(main())

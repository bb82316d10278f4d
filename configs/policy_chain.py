"""Unmasking policy for the shipped `toy-chain` model in the paper's full-diffusion setting
(issue 22): one block of 128 response tokens after 262-token prompts; expert steering with the
mixture correction (E = 1 confidence-threshold tau = 0.9 rollout added to each group of G = 8
policy rollouts, its decisions scored under `log(G/(G+E) pi + 1/(G+E))`, as the public
trainer); multiplicative reward at alpha = 1. Otherwise the toy-sudoku recipe
(`configs/policy_sudoku.py`: clip 0.5, 2 updates per batch, no KL, per-position ratios,
lr 1e-3 after 10 warm-up steps, cosine to 0 over 300 steps of 8 prompts).

Rollouts run under the prefix KV cache: the prompt's keys and values are computed once per
generation and each step forwards the 128 response positions, not 390 (what it costs the
threshold and greedy decoders: `experiments/policy_chain_cache.py`, experiments/README.md).
The policy sees the same window (the whole response) with or without it. Checkpoints every
5 minutes of wall time, so a run that a session ends resumes from at most 5 minutes back:

  lookum train policy --config configs/policy_chain.py --out experiments/runs/policy_chain
"""

from policy_rl.config import OptimConfig, PolicyTrainConfig
from policy_rl.grpo import GRPOConfig
from policy_rl.policy import PolicyConfig


def get_config() -> PolicyTrainConfig:
  return PolicyTrainConfig(
      model="toy-chain",
      task="chain",
      task_options={"num_steps": 42, "num_registers": 2, "max_operand": 2, "multiply": False,
                    "echo": True, "query_last": True},
      gen_length=128, block_length=None, cache="prefix", prompts_per_step=8,
      policy=PolicyConfig(),
      grpo=GRPOConfig(group_size=8, clip_eps=0.5, updates_per_batch=2, ratio_level="position",
                      alpha=1.0, expert_rows=1, mixture_correction=True, expert_tau=0.9),
      optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, weight_decay=0.1,
                        max_grad_norm=0.2),
      num_steps=300, checkpoint_every=25, keep_checkpoints=1, checkpoint_interval_s=300.0)

"""Unmasking policy for a toy addition model (paper recipe: G=8, clip 0.5, 2 updates, no KL,
lr 3e-5 cosine with 100 warm-up steps, weight decay 0.1, grad clip 0.2; full diffusion).

`model` is the directory written by `lookum train mdm --config configs/addition.py`
(DIR/model); pass another with `--override model=PATH`.
"""

from policy_rl.config import OptimConfig, PolicyTrainConfig
from policy_rl.grpo import GRPOConfig
from policy_rl.policy import PolicyConfig


def get_config() -> PolicyTrainConfig:
  return PolicyTrainConfig(
      model="runs/addition/model",
      task="addition", task_options={"min_digits": 4, "max_digits": 5},
      block_length=None, prompts_per_step=16,
      policy=PolicyConfig(),
      grpo=GRPOConfig(group_size=8, clip_eps=0.5, updates_per_batch=2, alpha=1.0),
      optim=OptimConfig(learning_rate=3e-5, warmup_steps=100, weight_decay=0.1,
                        max_grad_norm=0.2),
      num_steps=2000, checkpoint_every=100)

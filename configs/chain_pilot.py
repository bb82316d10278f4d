"""Register chains, small pilot: 15 steps (32-token answers), 2 registers (70-token prompts).

Used to find a model size and learning rate that learn the chain rule quickly before the
full-size run (configs/chain.py).
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 15, "num_registers": 2, "max_operand": 2, "multiply": False},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=256,
      batch_size=64, num_steps=1500, learning_rate=2e-3, warmup_steps=50,
      checkpoint_every=100, log_every=25, seed=0)

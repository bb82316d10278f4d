"""Register chains at full size: 63 steps (128-token answers), 2 registers (262-token
prompts), operations +-1, +-2 mod 10: the `toy-chain` model.

The pilot (configs/chain_pilot.py) stayed at chance for 700 steps with operands up to 9
(no partial signal), so the operands are small; see lookum_jax/tasks/chain.py.
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 63, "num_registers": 2, "max_operand": 2, "multiply": False},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=512,
      batch_size=32, num_steps=1500, learning_rate=2e-3, warmup_steps=50,
      checkpoint_every=50, keep_checkpoints=2, log_every=25, seed=0)

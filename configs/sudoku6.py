"""6x6 Sudoku (2x3 boxes) with 20 blanks of 36 (unique solutions); responses of 36 digits
EOS-padded to 40 tokens.

Not piloted (only the 4x4 recipe was); expected ~50 min on 2 idle CPU cores (~10k tokens/s,
6000 steps x 64 x 76 tokens). Every checkpoint is kept so the one whose held-out accuracy
falls in the wanted range can be exported with `lookum train mdm --export-step N`.
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="sudoku", task_options={"size": 6, "num_blanks": 20},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      batch_size=64, num_steps=6000, learning_rate=2e-3, warmup_steps=200,
      checkpoint_every=500, keep_checkpoints=12, log_every=50, seed=0)

"""Register chains at full size, the `toy-chain` model: 42 steps, each restating its operation
and writing the new value (128-token answers), 2 registers (262-token prompts), operations
+-1, +-2 mod 10.

Pilots (configs/chain_pilot.py, 32-token answers): with operands up to 9 the next value is
independent of the previous one alone (no partial signal) and the loss stayed at chance for
700 steps; with +-1/+-2 and value-only answers (`echo=False`) the model learned to use the
previous value within 500 steps but not yet to fetch the operation from the prompt line,
which sits ~130-260 tokens away. With `echo=True` the answer copies each operation from a
fixed offset first (a direct signal, like Sudoku's givens), then computes the value locally.
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 42, "num_registers": 2, "max_operand": 2, "multiply": False,
                    "echo": True, "query_last": True},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=512,
      batch_size=16, num_steps=1200, learning_rate=3e-3, warmup_steps=50,
      checkpoint_every=50, keep_checkpoints=2, log_every=25, seed=0)

"""Register chains at full size, the `toy-chain` run: 42 steps, each restating its operation
and writing the new value (128-token answers), 2 registers with the queried one last
(262-token prompts), operations +-1, +-2 mod 10. 8000 steps of batch 16: about 4.5 h on 2
idle CPU cores (~2 s a step at 390 tokens x 16), minutes on an accelerator.

What the pilots showed (2 shared CPU cores; lookum_jax/tasks/chain.py has the reasons):
- operands up to 9, values only (configs/chain_pilot.py at 32-token answers): chance for
  700 steps of batch 64 (no partial signal);
- +-1/+-2, values only: the previous value used after ~500 steps of batch 64 (25% of next
  values right), the prompt's operation not yet at 575;
- `echo`, question naming a random line, batch 16: operations copied from one line after
  300 steps, the question still ignored at 500 (75% of operations right);
- `echo` + `query_last` (this config, lr 3e-3 over 1200 steps): every operation copied by
  step 350; values still at chance at step 550 (~0.1 of next values right even with the
  previous value and the operation visible). The values are what this longer run is for.
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 42, "num_registers": 2, "max_operand": 2, "multiply": False,
                    "echo": True, "query_last": True},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=512,
      batch_size=16, num_steps=8000, learning_rate=2.5e-3, warmup_steps=100,
      checkpoint_every=100, keep_checkpoints=2, log_every=25, seed=0)

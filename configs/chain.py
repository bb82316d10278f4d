"""toy-chain, stage 2 of its curriculum: register chains at full size.

42 operations, each restating its operation and writing the new value (128-token answers);
2 registers with the queried one last (262-token prompts); operations +-1, +-2 mod 10. The run
starts from stage 1's model (configs/chain_warmup.py: the same rule on short single-register
chains), so it only has to learn to find the queried line and to carry the rule over 42
steps.

Why a curriculum (2 CPU cores; lookum_jax/tasks/chain.py has the task's reasons): trained from
scratch at this size (batch 16, lr 2.5e-3), a model copied every operation by step 350 but
left the values at chance (0.106 with the rest of the answer visible) through step 1200.
On short chains the rule is learned in ~400 steps of batch 64.

  lookum train mdm --config configs/chain.py --out experiments/runs/toy-chain
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 42, "num_registers": 2, "max_operand": 2, "multiply": False,
                    "echo": True, "query_last": True},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=512,
      batch_size=16, num_steps=2500, learning_rate=1e-3, warmup_steps=50,
      checkpoint_every=100, keep_checkpoints=3, log_every=25, seed=0,
      init_from="experiments/runs/toy-chain-warmup/model-step500")

"""Stage 1 of toy-chain's curriculum: the chain rule on short single-register programs.

15 operations (64-token answers), one register (36-token prompts), +-1/+-2 mod 10, each step
restating its operation (`echo`). At this size a step is cheap, and the local rule (new value
= previous value + operation) is learned within ~400 steps of batch 64 (value accuracy 0.77
with the rest of the answer visible), where the full-size task at batch 16 and lr 2.5e-3
stayed at chance for 1200 steps. Stage 2 (configs/chain.py) starts from this model.

  lookum train mdm --config configs/chain_warmup.py --out experiments/runs/toy-chain-warmup \\
      --stop-after 500
  lookum train mdm --config configs/chain_warmup.py --out experiments/runs/toy-chain-warmup \\
      --export-step 500
"""

from lookum_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      task="chain",
      task_options={"num_steps": 15, "num_registers": 1, "max_operand": 2, "multiply": False,
                    "echo": True, "query_last": True},
      d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=384,
      max_sequence_length=128,
      batch_size=64, num_steps=1500, learning_rate=1e-3, warmup_steps=50,
      checkpoint_every=100, keep_checkpoints=3, log_every=25, seed=0)

"""GRPO for unmasking policies: rewards, advantages, the clipped loss, the direction of an
update on a bandit whose best action is known, exact resumption, configs and the CLI."""

from __future__ import annotations

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import hand_built_trajectory
from hypothesis import given, settings
from hypothesis import strategies as st

import policy_rl
from lookum_jax.cli import main
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from policy_rl.config import apply_overrides, load_config
from policy_rl.grpo import (
  GRPOConfig,
  group_advantages,
  group_reward_stats,
  grpo_loss,
  pair_bucket,
  step_reward,
  trajectory_log_probs,
)
from policy_rl.policy import PolicyConfig
from policy_rl.strategy import PolicyParams
from policy_rl.train import (
  PolicyTrainer,
  export_checkpoint,
  load_dllm,
  rollout_keys,
  train,
)

CONFIG_SOURCE = '''
from policy_rl.config import OptimConfig, PolicyTrainConfig
from policy_rl.grpo import GRPOConfig
from policy_rl.policy import PolicyConfig


def get_config():
  return PolicyTrainConfig(
      model="random",
      model_options={"vocab_size": 32, "d_model": 32, "n_layers": 1, "n_heads": 2,
                     "n_kv_heads": 1, "mlp_hidden_size": 64},
      task="bandit", task_options={"prompt_length": 4, "correct": "always"},
      gen_length=8, prompts_per_step=4,
      policy=PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
      grpo=GRPOConfig(group_size=8, alpha=1.0),
      optim=OptimConfig(learning_rate=0.05, warmup_steps=0),
      num_steps=3, checkpoint_every=1)
'''


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("configs") / "policy_test.py"
  path.write_text(CONFIG_SOURCE)
  return path


@pytest.fixture(scope="module")
def config(config_file):
  return load_config(config_file)


@pytest.fixture(scope="module")
def trainer(config):
  return PolicyTrainer(config, load_dllm(config))


# ---------------------------------------------------------------- rewards and advantages


def test_step_reward_values():
  correct, steps = jnp.array([1.0, 1.0, 0.0, 1.0]), jnp.array([2, 8, 2, 11])
  np.testing.assert_allclose(step_reward(correct, steps, 8, alpha=1.0),
                             [7 / 8, 1 / 8, 0.0, 1 / 8])
  np.testing.assert_allclose(step_reward(correct, steps, 8, alpha=2.0),
                             [49 / 64, 1 / 64, 0.0, 1 / 64])
  np.testing.assert_allclose(step_reward(correct, steps, 8, alpha=0.0), [1, 1, 0, 1])
  np.testing.assert_allclose(step_reward(correct, steps, 8, alpha=0.5, kind="additive"),
                             [1 - 0.125, 0.5, -0.125, 0.5])
  with pytest.raises(ValueError, match="reward kind must be one of"):
    step_reward(correct, steps, 8, 1.0, kind="log")


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4).flatmap(lambda g: st.tuples(st.just(g), st.lists(
    st.floats(-10, 10, width=32), min_size=3 * g, max_size=3 * g))))
def test_advantages_are_zero_mean_per_group(group_and_rewards):
  group_size, rewards = group_and_rewards
  rewards = np.asarray(rewards, np.float32)
  advantages = np.asarray(group_advantages(jnp.asarray(rewards), group_size))
  groups = rewards.reshape(3, group_size)
  np.testing.assert_allclose(advantages.reshape(3, group_size).mean(1), 0.0, atol=1e-5)
  np.testing.assert_allclose(advantages, (groups - groups.mean(1, keepdims=True)).ravel(),
                             atol=1e-5)


def test_advantage_normalisation_and_shape_errors():
  rewards = jnp.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
  advantages = group_advantages(rewards, 4, normalize=True)
  np.testing.assert_allclose(advantages[:4], np.array([3, -1, -1, -1]) / np.sqrt(3), rtol=1e-4)
  np.testing.assert_allclose(advantages[4:], 0.0)  # a group with equal rewards learns nothing
  with pytest.raises(ValueError, match="group_size=3"):
    group_advantages(rewards, 3)


def test_group_reward_stats_count_groups_without_signal():
  rewards = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5]
  stats = group_reward_stats(jnp.asarray(rewards), 4)
  assert stats == {"groups_all_equal": pytest.approx(2 / 3), "group_reward_std":
                   pytest.approx(0.5 / 3)}


@pytest.mark.parametrize("changes, message", [
    ({"group_size": 1}, "group_size must be >= 2"), ({"clip_eps": 1.0}, "clip_eps"),
    ({"ratio_level": "token"}, "ratio_level"), ({"reward": "exp"}, "reward must be one of"),
    ({"alpha": -1.0}, "alpha must be >= 0"), ({"updates_per_batch": 0}, "updates_per_batch")])
def test_bad_grpo_config_raises(changes, message):
  with pytest.raises(ValueError, match=message):
    GRPOConfig(**changes)


# ---------------------------------------------------------------- the clipped loss


def test_clipped_surrogate_on_a_hand_built_trajectory():
  policy = policy_rl.init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32,
                                              time_frequencies=16))
  params = PolicyParams()
  trajectory = hand_built_trajectory(0, [[True, True, False], [True, False, False]],
                                     positions=5, eligible_rate=0.8)
  current = jax.jit(lambda: trajectory_log_probs(policy, params, trajectory, None))()
  advantages = jnp.array([2.0, -1.0])

  # Old log-probs higher by log 4 on every step: the new/old ratio is 1/4.
  quarter = current + jnp.log(4.0) * trajectory.eligible / trajectory.eligible.sum(
      -1, keepdims=True).clip(1)

  @jax.jit
  def losses(current, quarter):
    loss = lambda level, old: grpo_loss(policy, params, GRPOConfig(ratio_level=level),
                                        trajectory, None, advantages, old)[0]
    return loss("step", current), loss("position", current), loss("step", quarter)

  at_one_step, at_one_position, at_quarter = losses(current, quarter)
  np.testing.assert_allclose(at_one_step, -0.5, rtol=1e-6)  # ratio 1: -mean(A)
  np.testing.assert_allclose(at_one_position, -0.5, rtol=1e-6)
  # Ratio 1/4 is clipped to 1/2 only where that is pessimistic (the negative advantage).
  np.testing.assert_allclose(at_quarter, -(2.0 * 0.25 + -1.0 * 0.5) / 2, rtol=1e-5)


# ---------------------------------------------------------------- one GRPO step on a bandit


@pytest.fixture(scope="module")
def bandit_rollout(trainer):
  state = trainer.init_state()
  return state, trainer.rollout(state, 0)


@pytest.mark.parametrize("favoured", ["fast", "slow"])
def test_grpo_step_moves_the_policy_toward_the_rewarded_behaviour(trainer, bandit_rollout,
                                                                  favoured):
  """Rewarding few steps (every rollout is correct) raises the unmask probability on the
  visited states; rewarding many steps lowers it."""
  state, rollout = bandit_rollout
  assert rollout.attention_mask is None  # bandit prompts have no padding
  steps = rollout.result.num_steps
  assert np.ptp(np.asarray(steps)) > 0  # the rollouts differ, so advantages are not all 0
  if favoured == "fast":
    rewards = trainer.rewards(rollout)[0]
    np.testing.assert_allclose(rewards, (8 - steps + 1) / 8)
  else:
    rewards = steps / 8.0
  new_state, metrics = trainer.update(state, rollout, rewards)
  assert int(new_state.step) == 1 and metrics["grad_norm"] > 0
  # Mean unmask probability on the visited states: the log-prob of "unmask everything"
  # (through the trainer's compiled log-prob program), exponentiated.
  decided = rollout.trajectory.eligible & rollout.trajectory.valid[..., None]
  unmask_all = rollout.trajectory.replace(actions=decided)
  before, after = (
      jnp.sum(jnp.where(decided, jnp.exp(trainer.log_probs(s, unmask_all, None)), 0.0))
      / decided.sum() for s in (state, new_state))
  np.testing.assert_allclose(before, jax.nn.sigmoid(-2.0), rtol=1e-5)
  assert (after > before + 1e-3) if favoured == "fast" else (after < before - 1e-3)


def test_rollout_layout(trainer, bandit_rollout):
  _, rollout = bandit_rollout
  assert rollout.result.tokens.shape == (32, 4 + 8)
  assert rollout.trajectory.num_steps == 8  # the whole budget; `valid` marks the steps taken
  np.testing.assert_array_equal(rollout.valid.sum(1), rollout.result.num_steps)
  np.testing.assert_array_equal(rollout.trajectory.valid.sum(1), rollout.result.num_steps)
  # Prompts are tiled G times; keys are one fold_in per prompt and rollout.
  np.testing.assert_array_equal(rollout.result.tokens[:8, :4], rollout.result.tokens[:1, :4]
                                .repeat(8, 0))
  keys = rollout_keys(0, 0, 4, 8)
  expected = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 0), 2),
                                5)
  np.testing.assert_array_equal(jax.random.key_data(keys[2 * 8 + 5]),
                                jax.random.key_data(expected))
  assert [pair_bucket(n, 1024) for n in (0, 3, 9, 1000, 1025, 3000)] == [8, 8, 16, 1024, 2048,
                                                                        3072]
  assert pair_bucket(9, 5) == 10 and pair_bucket(2000, None) == 2048


def test_expert_steering_rollouts(config, trainer):
  """With steering, the first rollout of each group follows the confidence threshold and is
  recorded like the others."""
  steered = PolicyTrainer(apply_overrides(config, ["grpo.expert_steering=True"]), trainer.model)
  rollout = steered.rollout(steered.init_state(), 0)
  expert = np.arange(32) % 8 == 0
  np.testing.assert_array_equal(rollout.expert_rows, expert)
  traj = jax.device_get(rollout.trajectory)
  above = (traj.token_features[..., 0] >= 0.9) & traj.eligible & traj.valid[..., None]
  np.testing.assert_array_equal(traj.actions[expert], above[expert])
  # The expert is deterministic (the dLLM decodes at temperature 0): one answer per prompt.
  tokens = np.asarray(rollout.result.tokens)
  np.testing.assert_array_equal(tokens[expert], tokens[expert][[0, 1, 2, 3]])
  assert len({tuple(row) for row in np.asarray(rollout.result.unmask_order)[~expert]}) > 4


def test_bandit_reference_correctness(trainer):
  from policy_rl.environments import BanditEnvironment

  env = BanditEnvironment(trainer.model, gen_length=8, block_length=4, prompt_length=4,
                          correct="reference", seed=1)
  batch = env.prompts(0, 2)
  assert batch.ids.shape == (2, 4) and batch.mask is None
  special = {trainer.model.config.mask_token_id, trainer.model.config.eos_token_id}
  assert not special & set(batch.ids.ravel().tolist())
  reference = generate(trainer.model, batch.ids, SamplerConfig(
      gen_length=8, block_length=4, steps=8,
          strategy=parse_strategy("low_confidence")), jax.random.key(0))
  tokens = np.repeat(np.asarray(reference.tokens), 2, axis=0)
  tokens[1, -1] = (tokens[1, -1] + 1) % 30
  np.testing.assert_array_equal(env.correct(tokens, batch, group_size=2), [1, 0, 1, 1])
  with pytest.raises(ValueError, match="correct must be one of"):
    BanditEnvironment(trainer.model, correct="sometimes")


# ---------------------------------------------------------------- training, resumption, CLI


def test_resumed_training_is_bit_identical(config, config_file, tmp_path):
  whole = tmp_path / "whole"
  assert main(["train", "policy", "--config", str(config_file), "--out", str(whole),
               "--no-progress"]) == 0
  split = tmp_path / "split"
  first = train(config, split, stop_after=1, progress=False)
  assert not first.completed and int(first.state.step) == 1
  resumed = train(config, split, progress=False)
  assert resumed.completed
  reference = train(config, whole, progress=False)  # already done: restores the final state
  chex.assert_trees_all_equal(reference.state, resumed.state)
  strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
                        for line in (path / "metrics.jsonl").read_text().splitlines()]
  assert strip(whole) == strip(split) and [r["step"] for r in strip(whole)] == [1, 2, 3]
  assert strip(whole)[0]["nfe"] > 0 and "reward" in strip(whole)[0]
  assert 0 <= strip(whole)[0]["groups_all_equal"] <= 1 and "group_reward_std" in strip(whole)[0]
  exported = policy_rl.load_policy(split / "policy")
  chex.assert_trees_all_equal(nnx.state(exported), resumed.state.params)
  with pytest.raises(ValueError, match="holds a run with a different config .*grpo"):
    train(apply_overrides(config, ["grpo.alpha=3"]), split, progress=False)


def test_checkpoints_by_wall_time_resume_bit_identical(config, tmp_path):
  """`checkpoint_interval_s` checkpoints after every step that ends that long after the last
  one (here: every step, though `checkpoint_every` is 100), and the run resumed from them ends
  where an uninterrupted run does (the programs are the tests' above: same config numbers)."""
  timed = config.replace(checkpoint_every=100, keep_checkpoints=3, checkpoint_interval_s=1e-9)
  first = train(timed, tmp_path / "timed", stop_after=2, progress=False)
  assert sorted(int(p.name) for p in (tmp_path / "timed" / "checkpoints").iterdir()) == [1, 2]
  resumed = train(timed, tmp_path / "timed", progress=False)
  whole = train(config.replace(checkpoint_every=100), tmp_path / "whole", progress=False)
  assert int(first.state.step) == 2 and resumed.completed
  chex.assert_trees_all_equal(resumed.state, whole.state)
  with pytest.raises(ValueError, match="checkpoint_interval_s must be a number of seconds"):
    config.replace(checkpoint_interval_s=-1)
  with pytest.raises(ValueError, match="cache must be one of"):
    config.replace(cache="kv")


def test_export_of_a_stopped_run_is_its_checkpoint(config, config_file, tmp_path, capsys):
  """`lookum train policy --export-step N` writes checkpoint N's policy without a dLLM; a bad
  step names the ones there are, and a directory with no run says so."""
  run = tmp_path / "run"
  stopped = train(config.replace(keep_checkpoints=3), run, stop_after=1, progress=False)
  assert not stopped.completed and not (run / "policy").exists()
  assert main(["train", "policy", "--config", str(config_file), "--out", str(run),
               "--override", "keep_checkpoints=3", "--export-step", "1"]) == 0
  assert str(run / "policy-step1") in capsys.readouterr().out
  exported = policy_rl.load_policy(run / "policy-step1")
  chex.assert_trees_all_equal(nnx.state(exported, nnx.Param), stopped.state.params)
  with pytest.raises(ValueError, match=r"no checkpoint of step 7; available: \[1\]"):
    export_checkpoint(config.replace(keep_checkpoints=3), run, step=7)
  with pytest.raises(ValueError, match="holds no policy run"):
    export_checkpoint(config, tmp_path / "elsewhere")


def test_overrides_and_config_errors(config, config_file, capsys):
  changed = apply_overrides(config, [
      "grpo.alpha=3", "policy.features=['confidence', 'margin']", "num_steps=10",
      "task_options.correct=reference", "optim.learning_rate=1e-4", "block_length=4"])
  assert changed.grpo.alpha == 3.0 and isinstance(changed.grpo.alpha, float)
  assert changed.policy.features == ("confidence", "margin")
  assert changed.num_steps == 10 and changed.block_length == 4
  assert dict(changed.task_options) == {"prompt_length": 4, "correct": "reference"}
  for override, message in [
      ("grpo.beta=1", "unknown config key 'beta'.*GRPOConfig"),
      ("learning_rate=1", "unknown config key 'learning_rate'.*optim.<field>"),
      ("num_steps=many", "num_steps must be int"), ("grpo=3", "set a field of grpo"),
      ("policy.width=30", "must be an even integer"), ("noequals", "not of the form"),
      ("optim.warmup_steps=5", "warmup_steps \\(5\\) must be smaller than")]:
    with pytest.raises(ValueError, match=message):
      apply_overrides(config, [override])
  with pytest.raises(ValueError, match="must be a multiple of block_length"):
    config.replace(block_length=3)
  assert main(["train", "policy", "--config", str(config_file), "--override", "grpo.nope=1"]) == 2
  assert "lookum train policy: error: unknown config key 'nope'" in capsys.readouterr().err
  assert main(["train", "policy", "--config", str(config_file), "--override",
               "model=/no/such/model"]) == 2
  assert "is not an existing local directory" in capsys.readouterr().err
  with pytest.raises(ValueError, match="task 'bandit' has no option"):
    PolicyTrainer(apply_overrides(config, ["task_options.digits=3"]), load_dllm(config))


def test_task_environment_scores_decoded_responses():
  from lookum_jax.model import tiny
  from lookum_jax.tasks import build_tokenizer, encode_example, get_task, model_token_config
  from policy_rl.environments import TaskEnvironment

  tokenizer = build_tokenizer()
  task = get_task("addition", max_digits=2)
  model_config = tiny(**model_token_config(tokenizer))
  env = TaskEnvironment(task, tokenizer, seed=3, stop_token_ids=model_config.stop_token_ids)
  batch = env.prompts(7, 3)
  again = env.prompts(7, 3)
  np.testing.assert_array_equal(batch.ids, again.ids)
  assert batch.ids.shape == (3, task.prompt_length) and batch.mask.any(1).all()
  responses = np.stack([encode_example(task, ex, tokenizer)[1] for ex in batch.examples])
  tokens = np.concatenate([np.repeat(batch.ids, 2, 0), np.repeat(responses, 2, 0)], 1)
  tokens[3, task.prompt_length] = tokenizer.convert_tokens_to_ids("0") if (
      tokens[3, task.prompt_length] != tokenizer.convert_tokens_to_ids("0")) else (
      tokenizer.convert_tokens_to_ids("1"))
  np.testing.assert_array_equal(env.correct(tokens, batch, group_size=2), [1, 1, 1, 0, 1, 1])

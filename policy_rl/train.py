"""Trains an unmasking policy with GRPO against a frozen dLLM.

    lookum train policy --config configs/policy_bandit.py [--override grpo.alpha=3]
        [--steps N] [--out DIR] [--stop-after N] [--no-progress]

Each train step decodes `prompts_per_step` prompts `group_size` times each, plus
`grpo.expert_rows` times by the threshold expert (one batch, one program, under the config's
KV cache; rows prompt-major, one key per rollout by `fold_in`), scores the rows, and makes
`grpo.updates_per_batch` clipped-ratio updates of the policy (AdamW, warm-up + cosine,
gradient clipping) in one program (`grpo.grpo_updates`) that trains on the packed (row, step)
pairs that can move the loss: valid steps of rows with a non-zero advantage. Prompts and
rollout keys are pure functions of (seed, step) and checkpoints (orbax: params, optimizer
state, step; written to a temporary directory and renamed into place; every
`checkpoint_every` steps and after `checkpoint_interval_s` seconds) hold everything else, so
rerunning the command resumes and ends bit-identical to an uninterrupted run. Metrics go to
DIR/metrics.jsonl, the final policy to DIR/policy.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

import policy_rl  # noqa: F401  (registers the `policy` strategy)
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.loop import GenerationResult, generate
from lookum_jax.training import runs
from policy_rl.config import OptimConfig, PolicyTrainConfig
from policy_rl.environments import Environment, PromptBatch, make_environment
from policy_rl.grpo import (
    GRPOConfig,
    PairIndex,
    PolicyTrainState,
    expert_rows,
    group_advantages,
    group_reward_stats,
    grpo_update,
    grpo_updates,
    pack_pairs,
    step_reward,
    trajectory_log_probs,
)
from policy_rl.policy import UnmaskingPolicy, init_policy, save_policy
from policy_rl.strategy import PolicyParams, SteeredPolicy, Trajectory

CONFIG_FILE = "policy_train_config.json"
METRICS_FILE = runs.METRICS_FILE
CHECKPOINT_DIR = runs.CHECKPOINT_DIR
POLICY_DIR = "policy"


def learning_rate_schedule(optim: OptimConfig, num_steps: int,
                           updates_per_batch: int) -> optax.Schedule:
  """Learning rate per optimizer update (train steps * updates_per_batch of them)."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.learning_rate,
      warmup_steps=optim.warmup_steps * updates_per_batch,
      decay_steps=num_steps * updates_per_batch,
      end_value=optim.learning_rate * optim.min_lr_ratio)


def make_optimizer(optim: OptimConfig, num_steps: int,
                   updates_per_batch: int) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW (weight decay on matrices only)."""
  return optax.chain(
      optax.clip_by_global_norm(optim.max_grad_norm),
      optax.adamw(learning_rate_schedule(optim, num_steps, updates_per_batch),
                  b1=optim.adam_b1, b2=optim.adam_b2, weight_decay=optim.weight_decay,
                  mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)))


@functools.partial(jax.jit, static_argnames=("graphdef", "params", "chunk"))
def _log_probs(graphdef, policy_params, trajectory, attention_mask, expert, *, params,
               mixture, chunk=None):
  return trajectory_log_probs(nnx.merge(graphdef, policy_params), params, trajectory,
                              attention_mask, expert, mixture, chunk)


@functools.partial(jax.jit, static_argnames=("graphdef", "params", "grpo", "optim", "num_steps"))
def _update(graphdef, state, trajectory, attention_mask, advantages, old_log_probs, expert, *,
            params, grpo, optim, num_steps):
  """One update on the whole trajectory given its old log-probabilities (the unpacked
  program; `experiments/bench_memory.py` measures it). Training runs `_updates`."""
  tx = make_optimizer(optim, num_steps, grpo.updates_per_batch)
  return grpo_update(graphdef, tx, params, grpo, state, trajectory, attention_mask, advantages,
                     old_log_probs, expert)


def _updates_impl(graphdef, state, trajectory, attention_mask, advantages, expert, index, *,
                  params, grpo, optim, num_steps):
  tx = make_optimizer(optim, num_steps, grpo.updates_per_batch)
  return grpo_updates(graphdef, tx, params, grpo, state, trajectory, attention_mask, advantages,
                      expert, index)


_STATIC = ("graphdef", "params", "grpo", "optim", "num_steps")
_updates = jax.jit(_updates_impl, static_argnames=_STATIC)
# The training loop's: the old state's buffers are reused for the new one.
_updates_donated = jax.jit(_updates_impl, static_argnames=_STATIC, donate_argnames=("state",))


def rollout_keys(seed: int, step: int, num_prompts: int, group_size: int) -> jax.Array:
  """`[num_prompts * group_size]` keys: fold_in(fold_in(fold_in(key(seed), step), prompt), g)."""
  step_key = jax.random.fold_in(jax.random.key(seed), step)
  per_prompt = jax.vmap(lambda p: jax.random.fold_in(step_key, p))(jnp.arange(num_prompts))
  per_rollout = jax.vmap(
      lambda k: jax.vmap(lambda g: jax.random.fold_in(k, g))(jnp.arange(group_size)))(per_prompt)
  return per_rollout.reshape(-1)


@dataclasses.dataclass
class Rollout:
  """A decoded batch: the generation, its recorded trajectory (every step of the sampler's
  budget; `valid` `[B, S]` on the host marks the steps taken), the policy's attention mask
  `[B, T]` (None without prompt padding), the expert rows, and the prompts it answers."""

  result: GenerationResult
  trajectory: Trajectory
  attention_mask: jax.Array | None
  expert_rows: jax.Array
  batch: PromptBatch
  valid: np.ndarray


class PolicyTrainer:
  """Rollouts and GRPO updates of one run (the dLLM `model` is frozen, never updated)."""

  def __init__(self, config: PolicyTrainConfig, model: nnx.Module,
               environment: Environment | None = None):
    self.config, self.model = config, model
    self.environment = environment or make_environment(config, model)
    gen_length = self.environment.gen_length
    block_length = config.block_length or gen_length
    self.params = PolicyParams(mode="sample", temperature=config.policy_temperature,
                               features=config.policy.features,
                               expert_tau=config.grpo.expert_tau, record=True)
    self.sampler = SamplerConfig(gen_length=gen_length, block_length=block_length,
                                 steps=gen_length, temperature=0.0, strategy=self.params,
                                 cache=config.cache)
    self.graphdef, _ = nnx.split(init_policy(config.policy, seed=config.seed))

  @property
  def grpo(self) -> GRPOConfig:
    return self.config.grpo

  def init_state(self) -> PolicyTrainState:
    _, params = nnx.split(init_policy(self.config.policy, seed=self.config.seed))
    tx = make_optimizer(self.config.optim, self.config.num_steps, self.grpo.updates_per_batch)
    state = PolicyTrainState(params=params, opt_state=tx.init(params),
                             step=jnp.zeros((), jnp.int32))
    # Committed like a restored checkpoint, so a resumed run reuses the compiled programs.
    return jax.device_put(state, jax.devices()[0])

  def policy(self, state: PolicyTrainState) -> UnmaskingPolicy:
    return nnx.merge(self.graphdef, state.params)

  def log_probs(self, state: PolicyTrainState, trajectory: Trajectory,
                attention_mask: jax.Array | None, expert: jax.Array | None = None
                ) -> jax.Array:
    """`[B, S, T]` log-probabilities of a trajectory's decisions under the state's policy
    (the `expert` rows' under the GRPO config's mixture, when it has one)."""
    return _log_probs(self.graphdef, state.params, trajectory, attention_mask, expert,
                      params=self.params, mixture=self.grpo.mixture_weights,
                      chunk=self.grpo.update_chunk)

  def rollout(self, state: PolicyTrainState, step: int) -> Rollout:
    """Decodes the step's prompts `group_size` times each under the current policy, plus
    `expert_rows` times by the expert."""
    n, g = self.config.prompts_per_step, self.grpo.rows_per_prompt
    batch = self.environment.prompts(step, n)
    ids = np.repeat(batch.ids, g, axis=0)
    mask = None if batch.mask is None else np.repeat(batch.mask, g, axis=0)
    rows = expert_rows(n, self.grpo)
    steered = SteeredPolicy(self.policy(state), rows)
    result = generate(self.model, ids, self.sampler.with_policy(steered),
                      rollout_keys(self.config.seed, step, n, g), mask)
    trajectory = result.strategy_state.trajectory
    attention_mask = None  # the policy sees the response window only: no prompt padding
    return Rollout(result=result, trajectory=trajectory, attention_mask=attention_mask,
                   expert_rows=rows, batch=batch, valid=np.asarray(trajectory.valid))

  def rewards(self, rollout: Rollout) -> tuple[jax.Array, np.ndarray]:
    """(rewards `[B]`, correct `[B]`) of a rollout."""
    correct = self.environment.correct(np.asarray(rollout.result.tokens), rollout.batch,
                                       self.grpo.rows_per_prompt)
    rewards = step_reward(correct, rollout.result.num_steps, self.sampler.gen_length,
                          self.grpo.alpha, self.grpo.reward)
    return rewards, correct

  def trained_pairs(self, rollout: Rollout, advantages: Any) -> PairIndex:
    """The packed (row, step) pairs an update trains on: the valid steps of rows whose
    advantage is not zero (the others add exactly zero to the loss and its gradient)."""
    trains = rollout.valid & (np.asarray(advantages) != 0)[:, None]
    return pack_pairs(trains, self.grpo.update_chunk)

  def update(self, state: PolicyTrainState, rollout: Rollout, rewards: jax.Array, *,
             donate: bool = False) -> tuple[PolicyTrainState, dict[str, float]]:
    """`updates_per_batch` GRPO updates on one rollout, one program; counts one train step.
    `donate`: the program reuses `state`'s buffers (do not read `state` afterwards)."""
    advantages = group_advantages(rewards, self.grpo.rows_per_prompt,
                                  self.grpo.normalize_advantages)
    index = self.trained_pairs(rollout, advantages)
    run = _updates_donated if donate else _updates
    state, metrics = run(self.graphdef, state, rollout.trajectory, rollout.attention_mask,
                         advantages, rollout.expert_rows, index, params=self.params,
                         grpo=self.grpo, optim=self.config.optim,
                         num_steps=self.config.num_steps)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    metrics["trained_pairs"] = float(np.sum(np.asarray(index.real)))
    return state.replace(step=state.step + 1), metrics

  def train_step(self, state: PolicyTrainState, step: int, *, donate: bool = False
                 ) -> tuple[PolicyTrainState, dict[str, float], Rollout]:
    """Rollout, rewards, updates: one train step, with its metrics (`donate`: as `update`)."""
    rollout = self.rollout(state, step)
    rewards, correct = self.rewards(rollout)
    state, metrics = self.update(state, rollout, rewards, donate=donate)
    result = rollout.result
    metrics.update(
        reward=float(jnp.mean(rewards)), accuracy=float(np.mean(correct)),
        nfe=float(jnp.mean(result.nfe)), num_steps=float(jnp.mean(result.num_steps)),
        **group_reward_stats(rewards, self.grpo.rows_per_prompt),
        lr=float(learning_rate_schedule(self.config.optim, self.config.num_steps,
                                        self.grpo.updates_per_batch)(
                                            step * self.grpo.updates_per_batch)))
    if self.grpo.expert_steering or self.grpo.expert_rows:
      rows = np.asarray(rollout.expert_rows)
      metrics.update(expert_accuracy=float(np.mean(correct[rows])),
                     policy_accuracy=float(np.mean(correct[~rows])),
                     policy_nfe=float(jnp.mean(result.nfe[~rows])))
    return state, metrics, rollout


@dataclasses.dataclass
class PolicyTrainResult:
  state: PolicyTrainState
  policy: UnmaskingPolicy
  metrics: list[dict[str, Any]]
  completed: bool  # the run reached config.num_steps
  policy_dir: Path | None  # the exported policy (only when completed)


def load_dllm(config: PolicyTrainConfig) -> nnx.Module:
  """The frozen dLLM of a run: a random tiny model, or a checkpoint."""
  if config.model == "random":
    from lookum_jax.model import tiny
    from lookum_jax.model.random_init import random_model

    return random_model(tiny(**dict(config.model_options)), seed=config.model_seed)
  from lookum_jax.loading import load_model

  return load_model(config.model)


def train(config: PolicyTrainConfig, out_dir: str | os.PathLike, *,
          stop_after: int | None = None, progress: bool = True,
          model: nnx.Module | None = None,
          environment: Environment | None = None) -> PolicyTrainResult:
  """Trains (or resumes) the run in `out_dir` up to `config.num_steps`.

  Args:
    config: the run's config, recorded in `out_dir`.
    out_dir: run directory (checkpoints/, metrics.jsonl, policy/).
    stop_after: stop with a checkpoint once this many steps are done, as if interrupted
      (the schedule still spans `config.num_steps`); rerun to continue.
    progress: show a tqdm bar (reward, accuracy, NFE).
    model: the frozen dLLM (default: `load_dllm(config)`).
    environment: prompts and correctness (default: from `config.task`).
  """
  out_dir = Path(out_dir)
  runs.check_run_directory(out_dir, CONFIG_FILE, config.to_dict())
  trainer = PolicyTrainer(config, load_dllm(config) if model is None else model, environment)
  state = trainer.init_state()
  manager = runs.checkpoint_manager(out_dir, config.keep_checkpoints)
  try:
    state, _, start, end, metrics_path, history = runs.resume(
        manager, state, out_dir, config.num_steps, stop_after)
    state = _run_steps(trainer, state, start, end, manager, metrics_path, history, progress)
  finally:
    manager.close()
  policy = trainer.policy(state)
  completed = int(state.step) == config.num_steps
  policy_dir = save_policy(policy, out_dir / POLICY_DIR) if completed else None
  return PolicyTrainResult(state=state, policy=policy, metrics=history, completed=completed,
                           policy_dir=policy_dir)


def export_checkpoint(config: PolicyTrainConfig, out_dir: str | os.PathLike,
                      step: int | None = None,
                      policy_dir: str | os.PathLike | None = None) -> Path:
  """Exports the policy of checkpoint `step` (default: the latest) of the run in `out_dir`,
  as a finished run exports its final one, to `policy_dir` (default:
  `out_dir/policy-step<step>`). A run stopped before `config.num_steps` still gives a usable
  policy, named by the steps it trained. Needs no dLLM.

  Raises:
    ValueError: when `out_dir` holds a run of another config, or no checkpoint `step`.
  """
  out_dir = Path(out_dir)
  if not (out_dir / CONFIG_FILE).is_file():
    raise ValueError(f"{out_dir} holds no policy run ({CONFIG_FILE} is missing); pass the "
                     "--out directory of `lookum train policy`.")
  runs.check_run_directory(out_dir, CONFIG_FILE, config.to_dict())
  graphdef, params = nnx.split(init_policy(config.policy, seed=config.seed))
  tx = make_optimizer(config.optim, config.num_steps, config.grpo.updates_per_batch)
  like = PolicyTrainState(params=params, opt_state=tx.init(params),
                          step=jnp.zeros((), jnp.int32))
  step, state = runs.restore_step(out_dir, config.keep_checkpoints, step, like)
  target = Path(policy_dir) if policy_dir is not None else out_dir / f"{POLICY_DIR}-step{step}"
  return save_policy(nnx.merge(graphdef, state.params), target)


def _run_steps(trainer: PolicyTrainer, state: PolicyTrainState, start: int, end: int,
               manager: ocp.CheckpointManager, metrics_path: Path,
               history: list[dict[str, Any]], progress: bool) -> PolicyTrainState:
  """The loop: steps, logging and checkpoints (also on Ctrl-C, of the last finished step)."""
  config = trainer.config
  if start >= end:
    return state
  saved_step, run_start = start, time.perf_counter()
  saved_at = run_start
  bar = tqdm(total=config.num_steps, initial=start, disable=not progress, unit="step",
             dynamic_ncols=True)
  try:
    for step in range(start, end):
      state, metrics, _ = trainer.train_step(state, step, donate=True)
      done = step + 1
      bar.update(1)
      bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.2f}",
                      nfe=f"{metrics['nfe']:.1f}")
      if done % config.log_every == 0 or done == end:
        record = {"step": done, **metrics, "elapsed_s": time.perf_counter() - run_start}
        history.append(record)
        runs.append_metrics(metrics_path, record)
      overdue = (config.checkpoint_interval_s > 0
                 and time.perf_counter() - saved_at >= config.checkpoint_interval_s)
      if done % config.checkpoint_every == 0 or done == end or overdue:
        runs.save(manager, done, state)
        saved_step, saved_at = done, time.perf_counter()
  except KeyboardInterrupt:
    # Interrupted inside an update, `state`'s buffers may be donated already: the last
    # checkpoint then stands.
    finished = not any(x.is_deleted() for x in jax.tree.leaves(state))
    if finished and int(state.step) > saved_step:
      runs.save(manager, int(state.step), state, force=True)
    raise
  finally:
    bar.close()
  return state

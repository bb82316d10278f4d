"""The GRPO objective for unmasking policies: rewards, group advantages and the clipped loss.

A training batch holds G rollouts of each prompt (rows prompt-major: row = prompt * G + g).
Each rollout is rewarded for being correct and fast, advantages are rewards minus their group's
mean, and the policy maximises the PPO-clipped surrogate of those advantages with the ratio of
new to old action probabilities, recomputed from the recorded `Trajectory` (no KL term). Only
the policy's parameters are trained; the dLLM is frozen and decodes at temperature 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from policy_rl.features import PolicyInput
from policy_rl.policy import UnmaskingPolicy
from policy_rl.strategy import PolicyParams, Trajectory, position_log_probs

REWARDS = ("multiplicative", "additive")
RATIO_LEVELS = ("step", "position")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """GRPO hyperparameters (defaults: the paper's recipe, adapted from d1).

  Attributes:
    group_size: G rollouts per prompt.
    clip_eps: the ratio is clipped to [1 - eps, 1 + eps].
    updates_per_batch: optimizer updates on each batch of rollouts.
    ratio_level: "step" (one ratio per step: the joint Bernoulli action over the eligible
      positions) or "position" (one per position's decision, like GRPO's per-token ratios).
    normalize_advantages: also divide advantages by the group's standard deviation.
    reward: "multiplicative" `correct * ((L - min(steps, L) + 1) / L) ** alpha` or "additive"
      `correct - alpha * steps / L` (which collapsed to unmasking everything at once in the
      paper).
    alpha: the reward's speed weight.
    expert_rows: E rows added to each prompt's G rollouts that follow the
      confidence-threshold expert (a group is then G + E rows, the expert rows last), as
      in the public trainer. Their advantages are taken within the whole group.
    mixture_correction: score the expert rows' recorded decisions under the mixture that
      produced the group, `log(G/(G+E) * pi(a) + 1/(G+E))` per decision, for the new and
      the old policy alike (the public trainer's correction). Without it the expert's
      actions count as on-policy samples and dominate the gradient: the policy clones its
      expert.
    expert_steering: the legacy steering (the first of the G rollouts follows the expert,
      scored as on-policy; how the shipped toy policies were trained). Use `expert_rows`.
    expert_tau: the expert's confidence threshold.
    update_chunk: (row, step) pairs per chunk of the update's policy forward (and of the
      no-gradient `old_log_probs` pass): the loss is a sum over pairs, so `grpo_update`
      scans over chunks of this many pairs, accumulating the gradients and the metrics'
      numerators, and holds one chunk's activations instead of all `B * S` pairs'. A pair
      count that it does not divide is padded with zero-weight pairs. None (or a chunk >=
      the pair count) runs all pairs at once. Default 1024, from `experiments/bench_memory.py
      --grpo-only --update-only`: the update's memory is ~8.2 MiB per pair in a chunk (the
      default policy, T = 256): at 8 prompts x 8 rollouts x 256 steps (16384 pairs) one device
      needs 130.5 GiB all at once, 16.5 GiB in chunks of 2048, 8.3 GiB in chunks of 1024,
      4.2 GiB in 512, at the same compile time; 1024 is the largest that fits a 16 GiB chip
      beside its 1.9 GiB share of 8B weights, and a chunk of 1024 x 256 tokens still fills
      an accelerator. Smaller runs (pairs <= 1024) are unchanged.
  """

  group_size: int = 8
  clip_eps: float = 0.5
  updates_per_batch: int = 2
  ratio_level: str = "step"
  normalize_advantages: bool = False
  reward: str = "multiplicative"
  alpha: float = 1.0
  expert_rows: int = 0
  mixture_correction: bool = True
  expert_steering: bool = False
  expert_tau: float = 0.9
  update_chunk: int | None = 1024

  def __post_init__(self):
    for name in ("group_size", "updates_per_batch"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"GRPOConfig.{name} must be a positive int, got {value!r}.")
    if self.group_size < 2:
      raise ValueError(
          f"GRPOConfig.group_size must be >= 2 (advantages are relative to the group), got "
          f"{self.group_size}.")
    if not 0 < self.clip_eps < 1:
      raise ValueError(f"GRPOConfig.clip_eps must be in (0, 1), got {self.clip_eps!r}.")
    if self.ratio_level not in RATIO_LEVELS:
      raise ValueError(
          f"GRPOConfig.ratio_level must be one of {RATIO_LEVELS}, got {self.ratio_level!r}.")
    if self.reward not in REWARDS:
      raise ValueError(f"GRPOConfig.reward must be one of {REWARDS}, got {self.reward!r}.")
    if not self.alpha >= 0:
      raise ValueError(f"GRPOConfig.alpha must be >= 0, got {self.alpha!r}.")
    if not 0.0 <= self.expert_tau <= 1.0:
      raise ValueError(f"GRPOConfig.expert_tau must be in [0, 1], got {self.expert_tau!r}.")
    if (not isinstance(self.expert_rows, int) or isinstance(self.expert_rows, bool)
        or self.expert_rows < 0):
      raise ValueError(f"GRPOConfig.expert_rows must be an int >= 0, got {self.expert_rows!r}.")
    if self.update_chunk is not None and (
        not isinstance(self.update_chunk, int) or isinstance(self.update_chunk, bool)
        or self.update_chunk <= 0):
      raise ValueError(
          f"GRPOConfig.update_chunk must be a positive int ((row, step) pairs per chunk of the "
          f"update) or None (all pairs at once), got {self.update_chunk!r}.")
    if self.expert_rows and self.expert_steering:
      raise ValueError("GRPOConfig: expert_rows (E expert rows added to each group) and the "
                       "legacy expert_steering (the first rollout follows the expert) exclude "
                       "each other; set expert_steering=False.")

  @property
  def rows_per_prompt(self) -> int:
    """Rows decoded per prompt: the G rollouts plus the E expert rows."""
    return self.group_size + self.expert_rows

  @property
  def mixture_weights(self) -> tuple[float, float] | None:
    """(policy weight G/(G+E), expert weight 1/(G+E)) of the mixture that scores expert
    rows, or None when expert rows are scored as plain policy samples."""
    if not (self.expert_rows and self.mixture_correction):
      return None
    total = self.rows_per_prompt
    return self.group_size / total, 1.0 / total


def step_reward(correct: jax.Array, num_steps: jax.Array, gen_length: int, alpha: float,
                kind: str = "multiplicative") -> jax.Array:
  """Reward `[B]` of rollouts that are `correct` (bool or in [0, 1]) after `num_steps` steps."""
  correct = jnp.asarray(correct, jnp.float32)
  steps = jnp.minimum(jnp.asarray(num_steps, jnp.float32), gen_length)
  if kind == "multiplicative":
    return correct * ((gen_length - steps + 1.0) / gen_length) ** alpha
  if kind == "additive":
    return correct - alpha * steps / gen_length
  raise ValueError(f"reward kind must be one of {REWARDS}, got {kind!r}.")


def group_advantages(rewards: jax.Array, group_size: int, normalize: bool = False,
                     eps: float = 1e-6) -> jax.Array:
  """Rewards minus their group's mean `[B]` (groups: consecutive runs of `group_size` rows)."""
  rewards = jnp.asarray(rewards, jnp.float32)
  if rewards.ndim != 1 or rewards.shape[0] % group_size:
    raise ValueError(
        f"rewards must be [num_prompts * group_size] with group_size={group_size}, got shape "
        f"{rewards.shape}.")
  groups = rewards.reshape(-1, group_size)
  centred = groups - groups.mean(axis=1, keepdims=True)
  if normalize:
    centred = centred / (groups.std(axis=1, keepdims=True) + eps)
  return centred.reshape(-1)


def group_reward_stats(rewards: Any, group_size: int) -> dict[str, float]:
  """What GRPO can learn from a batch: the fraction of groups whose rewards are all equal
  (zero advantages, no gradient) and the mean within-group standard deviation."""
  groups = np.asarray(rewards, np.float32).reshape(-1, group_size)
  return {"groups_all_equal": float(np.mean(np.ptp(groups, axis=1) == 0)),
          "group_reward_std": float(np.mean(groups.std(axis=1)))}


def expert_rows(num_prompts: int, config: GRPOConfig) -> jax.Array:
  """`[num_prompts * rows_per_prompt]` rows that follow the expert: the E added rows at the
  end of each group, or with the legacy steering the first rollout of each group."""
  rows = config.rows_per_prompt
  within = jnp.arange(num_prompts * rows) % rows
  if config.expert_steering:
    return within == 0
  return within >= config.group_size


def _pair_log_probs(policy: UnmaskingPolicy, params: PolicyParams, inputs: PolicyInput,
                    mask: jax.Array | None, actions: jax.Array, eligible: jax.Array,
                    expert: jax.Array | None, mixture: tuple[float, float] | None
                    ) -> jax.Array:
  """Log-probabilities `[N, T]` of N (row, step) pairs' decisions (`eligible`: of valid
  steps only; `expert` `[N]`: the pair's row followed the expert)."""
  log_probs = position_log_probs(params, policy(inputs, mask), actions, eligible)
  if mixture is None or expert is None:
    return log_probs
  w_policy, w_expert = mixture
  mixed = jnp.logaddexp(jnp.log(w_policy) + log_probs, jnp.log(w_expert))
  return jnp.where(expert[:, None] & eligible, mixed, log_probs)


def _chunks(trajectory: Trajectory, attention_mask: jax.Array | None, chunk: int,
            per_row: dict[str, Any], per_pair: dict[str, Any] | None = None
            ) -> tuple[dict[str, Any], int]:
  """The trajectory's N = B * S (row, step) pairs in C chunks `[C, chunk, ...]`, strided:
  chunk k holds pairs k, k + C, k + 2C, ... (row-major pair order), so each chunk spans the
  whole batch and a batch sharded over devices stays sharded within every chunk. N is padded
  to C * chunk by repeating the last pair (`real` `[C, chunk]` marks the pairs that are not
  padding). The `per_row` `[B, ...]` arrays and `attention_mask` are broadcast to each pair
  (None stays None), the `per_pair` `[B, S, ...]` arrays split like the trajectory's.
  Returns the chunks and N."""
  b, s, t = trajectory.actions.shape
  n = b * s
  num_chunks = -(-n // chunk)
  pad = num_chunks * chunk - n

  def split(x, rows=False):
    if x is None:
      return None
    x = jnp.repeat(x, s, axis=0) if rows else x.reshape((n,) + x.shape[2:])
    if pad:
      x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return jnp.swapaxes(x.reshape((chunk, num_chunks) + x.shape[1:]), 0, 1)

  pairs = {"features": split(trajectory.token_features), "masked": split(trajectory.masked),
           "time": split(trajectory.time), "actions": split(trajectory.actions),
           "eligible": split(trajectory.eligible & trajectory.valid[..., None]),
           "valid": split(trajectory.valid), "mask": split(attention_mask, rows=True),
           "real": (jnp.arange(num_chunks * chunk) < n).reshape(chunk, num_chunks).T}
  pairs.update({k: split(v, rows=True) for k, v in per_row.items()})
  pairs.update({k: split(v) for k, v in (per_pair or {}).items()})
  return pairs, n


def _check_chunk(chunk: Any) -> None:
  if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0):
    raise ValueError(f"chunk must be a positive int ((row, step) pairs per chunk) or None (all "
                     f"pairs at once), got {chunk!r}.")


def trajectory_log_probs(policy: UnmaskingPolicy, params: PolicyParams, trajectory: Trajectory,
                         attention_mask: jax.Array | None, expert: jax.Array | None = None,
                         mixture: tuple[float, float] | None = None,
                         chunk: int | None = None) -> jax.Array:
  """Log-probabilities `[B, S, T]` of the recorded decisions under `policy` (0 off the
  eligible positions of valid steps).

  With `expert` (`[B]` rows that followed the deterministic expert) and `mixture` =
  (w_policy, w_expert), those rows' decisions are scored under the mixture that drew them,
  `log(w_policy * pi(a) + w_expert)` (the expert gives its own decision probability 1).
  `chunk`: run the policy over this many (row, step) pairs at a time (`lax.map`), as
  `GRPOConfig.update_chunk`; None or a chunk >= B * S runs all pairs at once.
  """
  _check_chunk(chunk)
  b, s, t = trajectory.actions.shape
  if chunk is None or chunk >= b * s:
    mask = None if attention_mask is None else jnp.repeat(attention_mask, s, axis=0)
    eligible = (trajectory.eligible & trajectory.valid[..., None]).reshape(b * s, t)
    pair_expert = None if expert is None else jnp.repeat(expert, s, axis=0)
    return _pair_log_probs(policy, params, trajectory.step_inputs(), mask,
                           trajectory.actions.reshape(b * s, t), eligible, pair_expert,
                           mixture).reshape(b, s, t)
  pairs, n = _chunks(trajectory, attention_mask, chunk, {"expert": expert})

  def one(c):
    inputs = PolicyInput(token_features=c["features"], masked=c["masked"], time=c["time"])
    return _pair_log_probs(policy, params, inputs, c["mask"], c["actions"], c["eligible"],
                           c.get("expert"), mixture)

  chunked = jax.lax.map(one, pairs)  # [C, chunk, T], strided as `_chunks` splits
  return jnp.swapaxes(chunked, 0, 1).reshape(-1, t)[:n].reshape(b, s, t)


def grpo_loss(policy: UnmaskingPolicy, params: PolicyParams, config: GRPOConfig,
              trajectory: Trajectory, attention_mask: jax.Array | None, advantages: jax.Array,
              old_log_probs: jax.Array, expert: jax.Array | None = None
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The clipped surrogate loss (to minimise) and diagnostics.

  Per row the clipped terms are averaged over its valid steps ("step") or its decided
  positions ("position"), then over rows (as GRPO averages a completion's tokens).
  `expert` `[B]`: the rows that followed the expert (scored under `config`'s mixture; the
  caller computes `old_log_probs` the same way).
  """
  new = trajectory_log_probs(policy, params, trajectory, attention_mask, expert,
                             config.mixture_weights)  # [B, S, T]
  decided = trajectory.eligible & trajectory.valid[..., None]
  if config.ratio_level == "step":
    new, old, weight = new.sum(-1), old_log_probs.sum(-1), trajectory.valid
  else:
    new, old, weight = new, old_log_probs, decided
  weight = weight.astype(jnp.float32)
  ratio = jnp.exp(new - old)
  adv = advantages.reshape((-1,) + (1,) * (ratio.ndim - 1))
  clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
  surrogate = jnp.minimum(ratio * adv, clipped * adv)
  per_row_axes = tuple(range(1, ratio.ndim))
  count = jnp.maximum(weight.sum(per_row_axes), 1.0)
  loss = -jnp.mean((surrogate * weight).sum(per_row_axes) / count)
  total = jnp.maximum(weight.sum(), 1.0)
  is_clipped = (jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32)
  metrics = {
      "clip_fraction": (is_clipped * weight).sum() / total,
      "ratio": (ratio * weight).sum() / total,
      "approx_kl": ((old - new) * weight).sum() / total,
  }
  return loss, metrics


def _chunk_loss(policy: UnmaskingPolicy, params: PolicyParams, config: GRPOConfig,
                c: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
  """One chunk's share of `grpo_loss` (its pairs' terms, each scaled by `c["scale"]`, the
  row's 1 / (B * count)) and of the metrics' numerators `[clipped, ratio, kl]`."""
  inputs = PolicyInput(token_features=c["features"], masked=c["masked"], time=c["time"])
  new = _pair_log_probs(policy, params, inputs, c["mask"], c["actions"], c["eligible"],
                        c.get("expert"), config.mixture_weights)  # [chunk, T]
  loss, numerators = _clipped_surrogate(config, new, c["old"], c)
  return loss, numerators[:3]


def _clipped_surrogate(config: GRPOConfig, new: jax.Array, old: jax.Array, c: dict[str, Any]
                       ) -> tuple[jax.Array, jax.Array]:
  """PPO's clipped surrogate over a chunk of pairs with per-position log-probabilities `new`
  and `old` `[chunk, T]` (summed per step at `ratio_level="step"`): the loss, each pair's
  terms scaled by `c["scale"]`, and the metrics' numerators `[clipped, ratio, kl, weight]`."""
  if config.ratio_level == "step":
    new, old, weight = new.sum(-1), old.sum(-1), c["valid"] & c["real"]
  else:
    weight = c["eligible"] & c["real"][:, None]
  weight = weight.astype(jnp.float32)
  ratio = jnp.exp(new - old)
  expand = lambda x: x.reshape((-1,) + (1,) * (ratio.ndim - 1))
  adv = expand(c["advantages"])
  clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
  surrogate = jnp.minimum(ratio * adv, clipped * adv)
  loss = -(surrogate * weight * expand(c["scale"])).sum()
  is_clipped = (jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32)
  return loss, jnp.stack([(is_clipped * weight).sum(), (ratio * weight).sum(),
                          ((old - new) * weight).sum(), weight.sum()])


def grpo_loss_and_grad(graphdef: nnx.GraphDef, policy_params: nnx.State, params: PolicyParams,
                       config: GRPOConfig, trajectory: Trajectory,
                       attention_mask: jax.Array | None, advantages: jax.Array,
                       old_log_probs: jax.Array, expert: jax.Array | None = None
                       ) -> tuple[tuple[jax.Array, dict[str, jax.Array]], nnx.State]:
  """`((loss, metrics), grads)` of `grpo_loss` with respect to `policy_params`.

  With `config.update_chunk` smaller than the B * S (row, step) pairs, the policy runs on
  one chunk of pairs at a time (`lax.scan`), each chunk's gradient added to the total: the
  loss is a mean over rows of per-row sums divided by the row's own count (valid steps or
  decided positions), a count that does not depend on the parameters, so it is a sum over
  pairs. Equal to the unchunked value up to float summation order.
  """
  b, s, _ = trajectory.actions.shape
  chunk = config.update_chunk
  if chunk is None or chunk >= b * s:
    def loss_fn(policy_params):
      return grpo_loss(nnx.merge(graphdef, policy_params), params, config, trajectory,
                       attention_mask, advantages, old_log_probs, expert)

    return jax.value_and_grad(loss_fn, has_aux=True)(policy_params)
  decided = trajectory.eligible & trajectory.valid[..., None]
  weight = (trajectory.valid if config.ratio_level == "step" else decided).astype(jnp.float32)
  count = jnp.maximum(weight.sum(tuple(range(1, weight.ndim))), 1.0)  # [B]
  total = jnp.maximum(weight.sum(), 1.0)
  pairs, _ = _chunks(trajectory, attention_mask, chunk,
                     {"expert": expert, "advantages": jnp.asarray(advantages, jnp.float32),
                      "scale": 1.0 / (b * count)}, {"old": old_log_probs})

  def body(carry, c):
    grads, sums = carry
    (loss, numerators), g = jax.value_and_grad(
        lambda p: _chunk_loss(nnx.merge(graphdef, p), params, config, c), has_aux=True)(
            policy_params)
    return (jax.tree.map(jnp.add, grads, g), sums + jnp.concatenate([loss[None], numerators])
            ), None

  zeros = (jax.tree.map(jnp.zeros_like, policy_params), jnp.zeros((4,), jnp.float32))
  (grads, sums), _ = jax.lax.scan(body, zeros, pairs)
  metrics = {"clip_fraction": sums[1] / total, "ratio": sums[2] / total,
             "approx_kl": sums[3] / total}
  return (sums[0], metrics), grads


@struct.dataclass
class PolicyTrainState:
  """The policy's parameters, optimizer state and completed train steps (a checkpoint)."""

  params: nnx.State
  opt_state: optax.OptState
  step: jax.Array  # int32 scalar


def grpo_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, params: PolicyParams,
                config: GRPOConfig, state: PolicyTrainState, trajectory: Trajectory,
                attention_mask: jax.Array | None, advantages: jax.Array,
                old_log_probs: jax.Array, expert: jax.Array | None = None
                ) -> tuple[PolicyTrainState, dict[str, Any]]:
  """One optimizer update of the policy on a batch of rollouts (pure; does not count a step;
  in chunks of `config.update_chunk` (row, step) pairs)."""
  (loss, metrics), grads = grpo_loss_and_grad(graphdef, state.params, params, config,
                                              trajectory, attention_mask, advantages,
                                              old_log_probs, expert)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
  return state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}


# ---------------------------------------------------------------- packed updates (training)

MIN_PAIRS = 8


@struct.dataclass
class PairIndex:
  """The (row, step) pairs an update trains on, packed: `rows`, `steps` `[P]` int32 and `real`
  `[P]` bool (false on the padding, which repeats the last real pair). Built on the host by
  `pack_pairs` (numpy arrays); P is bucketed so few programs compile."""

  rows: jax.Array
  steps: jax.Array
  real: jax.Array

  @property
  def size(self) -> int:
    return self.rows.shape[0]


def pair_bucket(n: int, chunk: int | None) -> int:
  """Packed size P of n pairs: the next power of two >= n (at least `MIN_PAIRS`), or, once
  that exceeds one chunk, the next multiple of `chunk` (P / chunk chunks)."""
  size = MIN_PAIRS
  while size < n:
    size *= 2
  if chunk is not None and size > chunk:
    size = chunk * max(1, -(-n // chunk))
  return size


def pack_pairs(trains: Any, chunk: int | None) -> PairIndex:
  """The pairs `trains [B, S]` (bool, host) marks, row-major, padded to `pair_bucket`.

  The trainer marks the valid steps of rows whose advantage is not zero: every other pair
  adds exactly zero to the loss and its gradient (an invalid step has no weight; a zero
  advantage zeroes the clipped surrogate), so leaving them out changes neither, only the
  work (a GRPO batch's rows take from a few steps to S, and groups whose rewards are all
  equal have zero advantages)."""
  trains = np.asarray(trains, bool)
  if trains.ndim != 2:
    raise ValueError(f"trains must be [rows, steps], got shape {trains.shape}.")
  rows, steps = np.nonzero(trains)
  n = len(rows)
  size = pair_bucket(n, chunk)
  last = (rows[-1], steps[-1]) if n else (0, 0)
  pad = lambda x, fill: np.concatenate([x, np.full(size - n, fill)]).astype(np.int32)
  # Host arrays: the jitted update takes them as arguments (no per-size transfer program).
  return PairIndex(rows=pad(rows, last[0]), steps=pad(steps, last[1]), real=np.arange(size) < n)


def _packed_chunks(trajectory: Trajectory, attention_mask: jax.Array | None, index: PairIndex,
                   chunk: int | None, per_row: dict[str, Any]) -> dict[str, Any]:
  """The indexed pairs in C chunks `[C, chunk, ...]` (strided as `_chunks`; C = P / chunk,
  one chunk of P when P <= chunk); `per_row` `[B, ...]` arrays and the mask follow their
  pair's row."""
  size = index.size
  chunk = size if chunk is None else min(chunk, size)
  if size % chunk:
    raise ValueError(f"the packed pair count {size} is not a multiple of the chunk {chunk}; "
                     "build the index with pack_pairs(..., chunk).")
  num_chunks = size // chunk

  def split(x, rows=False):
    if x is None:
      return None
    x = x[index.rows] if rows else x[index.rows, index.steps]
    return jnp.swapaxes(x.reshape((chunk, num_chunks) + x.shape[1:]), 0, 1)

  pairs = {"features": split(trajectory.token_features), "masked": split(trajectory.masked),
           "time": split(trajectory.time), "actions": split(trajectory.actions),
           "eligible": split(trajectory.eligible & trajectory.valid[..., None]),
           "valid": split(trajectory.valid), "mask": split(attention_mask, rows=True),
           "real": jnp.swapaxes(index.real.reshape(chunk, num_chunks), 0, 1)}
  pairs.update({k: split(v, rows=True) for k, v in per_row.items()})
  return pairs


def _packed_chunk_loss(policy: UnmaskingPolicy, params: PolicyParams, config: GRPOConfig,
                       c: dict[str, Any], first: jax.Array
                       ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """`_chunk_loss` of packed pairs; with `first` (the batch's first update, where the policy
  is still the one that produced the old log-probabilities) the old log-probabilities are
  this forward's own (a ratio of exactly 1), not `c["old"]`. Returns the loss and (the
  metrics' numerators `[clipped, ratio, kl, weight]`, the new log-probabilities)."""
  inputs = PolicyInput(token_features=c["features"], masked=c["masked"], time=c["time"])
  new = _pair_log_probs(policy, params, inputs, c["mask"], c["actions"], c["eligible"],
                        c.get("expert"), config.mixture_weights)  # [chunk, T]
  old = jnp.where(first, jax.lax.stop_gradient(new), c["old"])
  loss, numerators = _clipped_surrogate(config, new, old, c)
  return loss, (numerators, jax.lax.stop_gradient(new))


def grpo_updates(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, params: PolicyParams,
                 config: GRPOConfig, state: PolicyTrainState, trajectory: Trajectory,
                 attention_mask: jax.Array | None, advantages: jax.Array,
                 expert: jax.Array | None, index: PairIndex
                 ) -> tuple[PolicyTrainState, dict[str, Any]]:
  """All `config.updates_per_batch` optimizer updates of one batch, in one program, on the
  packed pairs `index` (`pack_pairs`; chunks of `config.update_chunk`).

  The same updates as `trajectory_log_probs` (the old log-probabilities) followed by
  `grpo_update` per update, without the separate no-gradient pass: the first update's own
  forward gives the old log-probabilities (its policy is the one that acted), and later
  updates reuse them. Returns the state (step not counted) and the metrics averaged over the
  updates; clip fraction, ratio and approx_kl are over the trained pairs' weights.
  """
  b = trajectory.actions.shape[0]
  decided = trajectory.eligible & trajectory.valid[..., None]
  weight = (trajectory.valid if config.ratio_level == "step" else decided).astype(jnp.float32)
  count = jnp.maximum(weight.sum(tuple(range(1, weight.ndim))), 1.0)  # [B]
  per_row = {"advantages": jnp.asarray(advantages, jnp.float32), "scale": 1.0 / (b * count)}
  if expert is not None:
    per_row["expert"] = expert
  pairs = _packed_chunks(trajectory, attention_mask, index, config.update_chunk, per_row)
  t = trajectory.actions.shape[-1]

  def update(carry, first):
    state, old = carry

    def body(acc, c):
      grads, sums = acc
      (loss, (numerators, new)), g = jax.value_and_grad(
          lambda p: _packed_chunk_loss(nnx.merge(graphdef, p), params, config, c, first),
          has_aux=True)(state.params)
      return (jax.tree.map(jnp.add, grads, g),
              sums + jnp.concatenate([loss[None], numerators])), new

    zeros = (jax.tree.map(jnp.zeros_like, state.params), jnp.zeros((5,), jnp.float32))
    (grads, sums), new = jax.lax.scan(body, zeros, {**pairs, "old": old})
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    total = jnp.maximum(sums[4], 1.0)
    metrics = {"loss": sums[0], "grad_norm": optax.tree.norm(grads),
               "clip_fraction": sums[1] / total, "ratio": sums[2] / total,
               "approx_kl": sums[3] / total}
    return (state, jnp.where(first, new, old)), metrics

  old = jnp.zeros(pairs["actions"].shape[:2] + (t,), jnp.float32)
  firsts = jnp.arange(config.updates_per_batch) == 0
  (state, _), metrics = jax.lax.scan(update, (state, old), firsts)
  return state, jax.tree.map(jnp.mean, metrics)

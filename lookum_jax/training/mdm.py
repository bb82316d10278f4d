"""Masked-diffusion training of the LLaDA model on a toy task, with exact resumption.

Objective (LLaDA SFT): per example draw t ~ U(eps, 1); mask each response token independently
with probability t (the prompt is never masked); cross-entropy of the original token at the
masked positions, weighted by 1/t and normalised by the number of response tokens; mean over
the batch. This is an upper bound on the response's negative log-likelihood.

Reproducibility: batches are a function of (seed, step) and the masking noise comes from a
key carried in the train state, so a run resumed from any checkpoint ends bit-identical to an
uninterrupted one. Checkpoints (params, optimizer state, step, key) are written by orbax,
which saves into a temporary directory and renames it into place only once complete, so an
interrupted save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import nnx, struct
from tqdm.auto import tqdm

from lookum_jax.model.llada import LLaDA, init_model
from lookum_jax.tasks.tokenizer import build_tokenizer, save_tokenizer
from lookum_jax.training import runs
from lookum_jax.training.config import TrainConfig
from lookum_jax.training.data import PrefetchedBatches, make_batch

CONFIG_FILE = "train_config.json"
METRICS_FILE = runs.METRICS_FILE
CHECKPOINT_DIR = runs.CHECKPOINT_DIR
MODEL_DIR = "model"


@struct.dataclass
class TrainState:
  """Everything that evolves during training; a checkpoint stores exactly this."""

  params: nnx.State
  opt_state: optax.OptState
  step: jax.Array  # int32 scalar: optimizer steps completed
  rng: jax.Array  # uint32 raw key data of the masking-noise key


def diffusion_loss(model: LLaDA, batch: dict[str, jax.Array], key: jax.Array, *,
                   mask_token_id: int, noise_eps: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The LLaDA SFT masked-diffusion loss of one batch.

  Args:
    model: the LLaDA model.
    batch: `tokens` int32 `[B, L]`, `attention_mask` bool `[B, L]` (false on prompt padding),
      `response_mask` bool `[B, L]` (true on the response positions the noise may mask).
    key: randomness for t and the mask pattern.
    mask_token_id: the mask token.
    noise_eps: lower bound of t, which keeps the 1/t weight finite.
  Returns:
    (loss, metrics): the scalar loss, plus the unweighted cross-entropy and accuracy of the
    masked tokens and the fraction of response tokens masked.
  """
  tokens, response = batch["tokens"], batch["response_mask"]
  t_key, mask_key = jax.random.split(key)
  t = jax.random.uniform(t_key, (tokens.shape[0], 1), minval=noise_eps, maxval=1.0)  # [B, 1]
  masked = (jax.random.uniform(mask_key, tokens.shape) < t) & response  # [B, L]
  noisy = jnp.where(masked, mask_token_id, tokens)
  logits = model(noisy, batch["attention_mask"])  # [B, L, V] float32
  token_ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens)  # [B, L]
  num_response = jnp.maximum(response.sum(axis=1), 1)  # [B]
  loss = (jnp.where(masked, token_ce / t, 0.0).sum(axis=1) / num_response).mean()
  num_masked = jnp.maximum(masked.sum(), 1)
  correct = (jnp.argmax(logits, axis=-1) == tokens) & masked
  metrics = {
      "masked_ce": jnp.where(masked, token_ce, 0.0).sum() / num_masked,
      "masked_acc": correct.sum() / num_masked,
      "mask_fraction": masked.sum() / jnp.maximum(response.sum(), 1),
  }
  return loss, metrics


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """AdamW (decay on matrices only) after global-norm clipping; linear warm-up to the peak
  learning rate, then cosine decay to `min_lr_ratio` of it at `num_steps`."""
  return optax.chain(
      optax.clip_by_global_norm(config.max_grad_norm),
      optax.adamw(learning_rate_schedule(config), b1=config.adam_b1, b2=config.adam_b2,
                  weight_decay=config.weight_decay,
                  mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)))


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate, warmup_steps=config.warmup_steps,
      decay_steps=config.num_steps, end_value=config.learning_rate * config.min_lr_ratio)


def init_train_state(config: TrainConfig, tx: optax.GradientTransformation
                     ) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graph definition and the train state at step 0 (params from `seed`)."""
  model = init_model(config.model_config(), seed=config.seed)
  graphdef, params = nnx.split(model)
  if config.init_from is not None:
    params = warm_start_params(params, config.init_from)
  rng = jax.random.key_data(jax.random.fold_in(jax.random.key(config.seed), 1))
  return graphdef, TrainState(params=params, opt_state=tx.init(params),
                              step=jnp.zeros((), jnp.int32), rng=rng)


def warm_start_params(params: nnx.State, model_dir: str | Path) -> nnx.State:
  """The params of the exported model in `model_dir`, checked leaf by leaf against the
  run's freshly initialised `params` (same paths, shapes and dtypes)."""
  from lookum_jax.loading import load_model  # the loader sits above training
  directory = Path(model_dir)
  if not (directory / "config.json").is_file():
    raise ValueError(f"TrainConfig.init_from={str(model_dir)!r} is not an exported model "
                     "directory (no config.json); export one with --export-step or use a "
                     "finished run's model/ directory.")
  loaded = nnx.state(load_model(directory, scan_layers=False))  # the run's layout
  want = dict(jax.tree_util.tree_leaves_with_path(params))
  got = dict(jax.tree_util.tree_leaves_with_path(loaded))
  problems = [f"{jax.tree_util.keystr(k)} missing" for k in want.keys() - got.keys()]
  problems += [f"{jax.tree_util.keystr(k)} unexpected" for k in got.keys() - want.keys()]
  problems += [f"{jax.tree_util.keystr(k)}: {got[k].shape}/{got[k].dtype} vs run "
               f"{want[k].shape}/{want[k].dtype}" for k in want.keys() & got.keys()
               if (got[k].shape, got[k].dtype) != (want[k].shape, want[k].dtype)]
  if problems:
    raise ValueError(f"TrainConfig.init_from={str(model_dir)!r} does not fit the run's model: "
                     + "; ".join(sorted(problems)[:8]))
  return jax.tree.map(lambda _, new: new, params, loaded)


def train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mask_token_id: int,
               noise_eps: float, state: TrainState, batch: dict[str, jax.Array]
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step (pure; jit it with the first four arguments bound).

  Plain optax on the `nnx.split` params rather than `nnx.Optimizer`: the whole train state
  is then one pytree of arrays that orbax saves and restores as-is, and donating it lets XLA
  update params and moments in place.
  """
  rng, step_key = jax.random.split(jax.random.wrap_key_data(state.rng))

  def loss_fn(params):
    return diffusion_loss(nnx.merge(graphdef, params), batch, step_key,
                          mask_token_id=mask_token_id, noise_eps=noise_eps)

  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = TrainState(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                         step=state.step + 1, rng=jax.random.key_data(rng))
  return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}


@dataclasses.dataclass
class TrainResult:
  """What `train` returns: the final state, the model built from it, and the log."""

  state: TrainState
  model: LLaDA
  metrics: list[dict[str, Any]]
  completed: bool  # True when the run reached config.num_steps
  resumed_from: int | None  # the checkpoint step this invocation started from, if any
  model_dir: Path | None  # the exported model (only when completed)


def export_model(model: LLaDA, out_dir: str | Path) -> Path:
  """Saves `model` in the converted layout (config.json + orbax params) with the tokenizer
  files beside it, so `lookum_jax.load_model` and `AutoTokenizer` both load the directory."""
  from lookum_jax.loading import save_model  # the package's converted-checkpoint writer

  with tempfile.TemporaryDirectory() as tokenizer_dir:
    save_tokenizer(tokenizer_dir)
    return save_model(model, out_dir, overwrite=True, tokenizer=tokenizer_dir)


def train(config: TrainConfig, out_dir: str | Path, *, stop_after: int | None = None,
          progress: bool = True, export: bool = True) -> TrainResult:
  """Trains (or resumes) the run in `out_dir` up to `config.num_steps`.

  Rerunning with the same config resumes from the latest checkpoint. At the end the model is
  exported to `out_dir/model` (see `export_model`).

  Args:
    config: the run's config; recorded in `out_dir/train_config.json`.
    out_dir: run directory (checkpoints, metrics.jsonl, model/).
    stop_after: stop (with a checkpoint) once this many steps are completed, as if the job had
      been interrupted there; the learning-rate schedule still follows `config.num_steps`.
    progress: show a tqdm progress bar.
    export: write the final model when the run completes.
  """
  out_dir = Path(out_dir)
  runs.check_run_directory(out_dir, CONFIG_FILE, config.to_dict())
  task, tokenizer = config.make_task(), build_tokenizer()
  gen_length = config.resolved_gen_length
  tx = make_optimizer(config)
  graphdef, state = init_train_state(config, tx)
  manager = runs.checkpoint_manager(out_dir, config.keep_checkpoints)
  try:
    state, latest, start, end, metrics_path, history = runs.resume(
        manager, state, out_dir, config.num_steps, stop_after)
    step_fn = jax.jit(
        functools.partial(train_step, graphdef, tx, config.model_config().mask_token_id,
                          config.noise_eps),
        donate_argnums=0)
    make = functools.partial(make_batch, task, tokenizer, config.batch_size, gen_length,
                             config.seed)
    state, history = _run_steps(step_fn, state, make, start, end, manager, config, metrics_path,
                                history, progress)
  finally:
    manager.close()
  model = nnx.merge(graphdef, state.params)
  completed = int(state.step) == config.num_steps
  model_dir = export_model(model, out_dir / MODEL_DIR) if completed and export else None
  return TrainResult(state=state, model=model, metrics=history, completed=completed,
                     resumed_from=latest, model_dir=model_dir)


def read_run_config(out_dir: str | Path) -> TrainConfig:
  """The config recorded in a run directory."""
  path = Path(out_dir) / CONFIG_FILE
  if not path.is_file():
    raise ValueError(f"{out_dir} is not a training run directory (no {CONFIG_FILE})")
  return TrainConfig(**json.loads(path.read_text()))


def export_checkpoint(out_dir: str | Path, step: int | None = None,
                      model_dir: str | Path | None = None) -> Path:
  """Exports the model of checkpoint `step` (default: the latest) of a run, like the final
  model, to `model_dir` (default: `out_dir/model-step<step>`). Lets one pick, after the fact,
  the checkpoint whose accuracy falls in a wanted range."""
  out_dir = Path(out_dir)
  config = read_run_config(out_dir)
  graphdef, state = init_train_state(config, make_optimizer(config))
  step, state = runs.restore_step(out_dir, config.keep_checkpoints, step, state)
  target = Path(model_dir) if model_dir is not None else out_dir / f"{MODEL_DIR}-step{step}"
  return export_model(nnx.merge(graphdef, state.params), target)


def _run_steps(step_fn, state: TrainState, make, start: int, end: int,
               manager: ocp.CheckpointManager, config: TrainConfig, metrics_path: Path,
               history: list[dict[str, Any]], progress: bool
               ) -> tuple[TrainState, list[dict[str, Any]]]:
  """The loop: steps, periodic logging and checkpoints; a checkpoint on Ctrl-C too."""
  saved_step = start
  if start >= end:
    return state, history
  batches = PrefetchedBatches(make, start, end)
  bar = tqdm(total=config.num_steps, initial=start, disable=not progress, unit="step",
             dynamic_ncols=True)
  window_start, window_tokens, run_start = None, 0, time.perf_counter()
  try:
    for step, batch in batches:
      state, metrics = step_fn(state, batch)
      done = step + 1
      if window_start is None:  # time from the end of the first (compiling) step
        jax.block_until_ready(state.step)
        window_start = time.perf_counter()
      else:
        window_tokens += batch["tokens"].size
      bar.update(1)
      if done % config.log_every == 0 or done == end:
        record = {"step": done, **{k: float(v) for k, v in jax.device_get(metrics).items()}}
        now = time.perf_counter()
        record["lr"] = float(learning_rate_schedule(config)(done - 1))
        if window_tokens:
          record["tokens_per_s"] = window_tokens / (now - window_start)
        record["elapsed_s"] = now - run_start
        window_start, window_tokens = now, 0
        history.append(record)
        runs.append_metrics(metrics_path, record)
        bar.set_postfix(loss=f"{record['loss']:.4f}",
                        tok_s=f"{record.get('tokens_per_s', 0.0):.0f}")
      if done % config.checkpoint_every == 0 or done == end:
        runs.save(manager, done, state)
        saved_step = done
  except KeyboardInterrupt:
    # Save the last completed step, unless the interrupt hit inside a step whose input
    # buffers were already donated (then the previous checkpoint stays the latest).
    donated = any(x.is_deleted() for x in jax.tree.leaves(state) if isinstance(x, jax.Array))
    if not donated and int(state.step) > saved_step:
      runs.save(manager, int(state.step), state, force=True)
    raise
  finally:
    batches.close()
    bar.close()
  return state, history

"""Masked-diffusion training: objective, config, learning, and bit-exact resumption."""

import json
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import nnx

from lookum_jax.cli import main
from lookum_jax.tasks import build_tokenizer, get_task
from lookum_jax.training import (
    TrainConfig,
    apply_overrides,
    diffusion_loss,
    export_checkpoint,
    load_config,
    make_batch,
    train,
)

REPO = Path(__file__).resolve().parents[1]

TINY = TrainConfig(
    task="addition", task_options={"max_digits": 3}, d_model=32, n_layers=2, n_heads=2,
    n_kv_heads=1, mlp_hidden_size=64, max_sequence_length=32, batch_size=32, num_steps=30,
    learning_rate=3e-3, warmup_steps=3, checkpoint_every=10, log_every=5, seed=1)


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


# ---------------------------------------------------------------------------------------------
# Objective


class _UniformModel:
  """Stands in for LLaDA: uniform logits, and remembers what it was shown."""

  def __init__(self, vocab):
    self.vocab, self.seen = vocab, None

  def __call__(self, tokens, attention_mask=None):
    self.seen = tokens
    return jnp.zeros((*tokens.shape, self.vocab), jnp.float32)


def test_diffusion_loss_masks_only_the_response_and_weights_by_one_over_t():
  batch = {k: jnp.asarray(v) for k, v in
           make_batch(get_task("addition"), build_tokenizer(), 8, 8, seed=0, step=0).items()}
  model = _UniformModel(vocab=64)
  # eps close to 1 forces t ~ 1: every response token is masked and weighted 1/t ~ 1.
  loss, metrics = diffusion_loss(model, batch, jax.random.key(0), mask_token_id=2,
                                 noise_eps=1 - 1e-6)
  prompt = ~batch["response_mask"]
  assert (model.seen[prompt] == batch["tokens"][prompt]).all()
  assert (model.seen[batch["response_mask"]] == 2).all()
  assert float(metrics["mask_fraction"]) == 1.0
  np.testing.assert_allclose(float(loss), math.log(64), rtol=1e-5)
  # Any t: the 1/t weight makes the loss an unbiased estimate of sum(CE) / num_response,
  # which is log V here, however few tokens a small t masks.
  loss_of_key = lambda key: diffusion_loss(model, batch, key, mask_token_id=2, noise_eps=1e-3)
  losses, _ = jax.jit(jax.vmap(loss_of_key))(jax.random.split(jax.random.key(1), 400))
  assert abs(float(losses.mean()) / math.log(64) - 1) < 0.05
  assert float(losses.std()) > 0.1  # the noise level really varies between draws


# ---------------------------------------------------------------------------------------------
# Config


def test_config_validation_names_the_field():
  with pytest.raises(ValueError, match="TrainConfig.batch_size"):
    TINY.replace(batch_size=0)
  with pytest.raises(ValueError, match="TrainConfig.warmup_steps"):
    TINY.replace(warmup_steps=30)
  with pytest.raises(ValueError, match="TrainConfig.max_sequence_length=10"):
    TINY.replace(max_sequence_length=10)
  with pytest.raises(ValueError, match="valid tasks"):
    TINY.replace(task="sudokuu")
  with pytest.raises(ValueError, match="ModelConfig.d_model"):
    TINY.replace(d_model=31)
  with pytest.raises(TypeError):
    TINY.task_options["max_digits"] = 4  # read-only


def test_overrides():
  config = apply_overrides(TINY, ["batch_size=8", "learning_rate=1e-4", "task=sudoku",
                                  "task_options={'size': 4}", "task_options.num_blanks=6",
                                  "max_sequence_length=64", "gen_length=None"])
  assert config.batch_size == 8 and config.learning_rate == 1e-4 and config.task == "sudoku"
  assert dict(config.task_options) == {"size": 4, "num_blanks": 6}
  assert apply_overrides(TINY, ["learning_rate=1"]).learning_rate == 1.0
  with pytest.raises(ValueError,
                     match="unknown config key 'batch'.*valid keys of TrainConfig: task"):
    apply_overrides(TINY, ["batch=8"])
  with pytest.raises(ValueError, match="batch_size must be int, got 'eight'"):
    apply_overrides(TINY, ["batch_size=eight"])
  with pytest.raises(ValueError, match="not of the form key=value"):
    apply_overrides(TINY, ["batch_size"])
  with pytest.raises(ValueError, match="has no option"):
    apply_overrides(TINY, ["task_options.size=4"])


TOY_CONFIGS = sorted(p for pattern in ("sudoku*.py", "addition*.py", "countdown*.py")
                     for p in (REPO / "configs").glob(pattern))


@pytest.mark.parametrize("path", TOY_CONFIGS, ids=lambda p: p.name)
def test_toy_configs_load(path):
  config = load_config(path)
  assert config.model_config().num_params() * 4 <= 5 * 2**20  # <= 5 MB of float32 params
  task = config.make_task()
  assert config.resolved_gen_length >= task.gen_length


# ---------------------------------------------------------------------------------------------
# Training


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("full")
  return out, train(TINY, out, progress=False)


def test_short_training_lowers_the_loss(full_run):
  _, result = full_run
  tokenizer = build_tokenizer()
  batch = {k: jnp.asarray(v) for k, v in make_batch(
      TINY.make_task(), tokenizer, 64, TINY.resolved_gen_length, seed=999, step=0).items()}
  from lookum_jax.model import init_model
  initial = init_model(TINY.model_config(), seed=TINY.seed)

  @nnx.jit
  def loss_fn(model, key):
    return diffusion_loss(model, batch, key, mask_token_id=2, noise_eps=1e-3)[0]

  def held_out_loss(model):  # same noise for both models
    return np.mean([float(loss_fn(model, jax.random.key(i))) for i in range(8)])

  before, after = held_out_loss(initial), held_out_loss(result.model)
  assert after < 0.85 * before, (before, after)
  assert [r["step"] for r in result.metrics] == list(range(5, 31, 5))
  assert all(r["tokens_per_s"] > 0 for r in result.metrics[1:])


def test_interrupted_run_resumes_bit_identical(full_run, tmp_path):
  _, reference = full_run
  partial = train(TINY, tmp_path, stop_after=15, progress=False)
  assert not partial.completed and int(partial.state.step) == 15 and partial.model_dir is None
  assert partial.resumed_from is None
  ckpts = tmp_path / "checkpoints"
  assert sorted(p.name for p in ckpts.iterdir()) == ["10", "15"]
  # Simulate a crash after step 15: its checkpoint never finished (only orbax's temporary
  # directory is left), so the rerun must resume from step 10 and redo 11..15.
  shutil.rmtree(ckpts / "15")
  (ckpts / "15.orbax-checkpoint-tmp-0").mkdir()
  resumed = train(TINY, tmp_path, progress=False)
  assert resumed.resumed_from == 10 and resumed.completed and int(resumed.state.step) == 30
  assert not (ckpts / "15.orbax-checkpoint-tmp-0").exists()
  for a, b in zip(_leaves(reference.state), _leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)
  assert [r["step"] for r in resumed.metrics] == [r["step"] for r in reference.metrics]
  assert [r["loss"] for r in resumed.metrics] == [r["loss"] for r in reference.metrics]
  # A finished run reruns as a no-op with the same state.
  again = train(TINY, tmp_path, progress=False, export=False)
  for a, b in zip(_leaves(reference.state), _leaves(again.state), strict=True):
    np.testing.assert_array_equal(a, b)


def test_resuming_with_another_config_is_refused(full_run):
  out, _ = full_run
  with pytest.raises(ValueError, match="learning_rate: saved 0.003 vs now 0.001"):
    train(TINY.replace(learning_rate=1e-3), out, progress=False)


def test_exported_model_loads_with_its_tokenizer(full_run):
  out, result = full_run
  from lookum_jax.loading import load_model
  model_dir = out / "model"
  assert result.model_dir == model_dir.absolute()
  config = json.loads((model_dir / "config.json").read_text())
  assert config["mask_token_id"] == 2 and config["vocab_size"] == 64
  loaded = load_model(model_dir, scan_layers=False)  # the trained layout: bit-equal
  tokens = jnp.asarray([[5, 6, 14, 7, 20, 2, 2, 2]], jnp.int32)
  np.testing.assert_array_equal(np.asarray(loaded(tokens)), np.asarray(result.model(tokens)))
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  assert tokenizer.mask_token_id == loaded.config.mask_token_id
  assert tokenizer.eos_token_id == loaded.config.eos_token_id


def test_command_line(tmp_path, capsys):
  argv = ["train", "mdm", "--config", str(REPO / "configs" / "addition.py"), "--out", str(tmp_path),
          "--steps", "4", "--no-progress", "--override", "d_model=16", "--override", "n_layers=1",
          "--override", "mlp_hidden_size=32", "--override", "warmup_steps=1",
          "--override", "batch_size=4", "--override", "log_every=2"]
  assert main(argv) == 0
  assert "step 4/4" in capsys.readouterr().out
  assert (tmp_path / "model" / "config.json").is_file()
  assert main(argv[:-1] + ["batch=4"]) == 2
  assert "lookum train mdm: error: unknown config key 'batch'" in capsys.readouterr().err
  assert main(["train", "mdm", *argv[2:6], "--export-step", "4"]) == 0
  assert (tmp_path / "model-step4" / "config.json").is_file()


def test_export_checkpoint(full_run):
  out, result = full_run
  from lookum_jax.loading import load_model
  with pytest.raises(ValueError, match=r"no checkpoint of step 5; available: \[20, 30\]"):
    export_checkpoint(out, 5)
  exported = export_checkpoint(out, 30)
  assert exported == (out / "model-step30").absolute()
  tokens = jnp.asarray([[5, 6, 14, 7, 20, 2, 2, 2]], jnp.int32)
  np.testing.assert_array_equal(np.asarray(load_model(exported, scan_layers=False)(tokens)),
                                np.asarray(result.model(tokens)))
  earlier = load_model(export_checkpoint(out, 20, tmp_dir := out / "at20"))
  assert tmp_dir.is_dir()
  assert not np.array_equal(np.asarray(earlier(tokens)), np.asarray(result.model(tokens)))

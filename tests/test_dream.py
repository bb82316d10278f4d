"""Dream-7B port: config, HF (Qwen2) loading, fp32 parity with transformers' Qwen2 made
bidirectional plus Dream's logit shift, padding, sharding rules, and the samplers on top."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import forward, write_hf_checkpoint

from lookum_jax import load_model, save_model
from lookum_jax.convert import expected_hf_shapes, param_mappings
from lookum_jax.model import ModelConfig, abstract_model, init_model, sharding_rules, tiny
from lookum_jax.model import sharding as sh
from lookum_jax.model.config import dream_7b
from lookum_jax.model.dream import Dream, shift_logits
from lookum_jax.sampling import SamplerConfig, generate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LONG = 200  # long enough that a RoPE layout or frequency bug shows

# The public Dream-v0-Instruct-7B config.json (fields that matter here).
DREAM_7B_HF_CONFIG = {
    "architectures": ["DreamModel"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "mask_token_id": 151666,
    "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "Dream",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "pad_token_id": 151643, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 152064,
}


def tiny_dream(**changes) -> ModelConfig:
  base = dict(architecture="dream", qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6)
  base.update(changes)
  return tiny(**base)


def random_dream_tensors(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
  """Random HF-layout weights with O(1) activations; biases non-zero so a dropped bias shows."""
  rng = np.random.default_rng(seed)
  tensors = {}
  for name, shape in expected_hf_shapes(config).items():
    if name.endswith("norm.weight"):
      value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif name.endswith(".bias"):
      value = 0.5 * rng.standard_normal(shape)
    elif name == "model.embed_tokens.weight":
      value = rng.standard_normal(shape)
    else:  # Linear [out, in]
      value = rng.standard_normal(shape) / np.sqrt(shape[1])
    tensors[name] = value.astype(np.float32)
  return tensors


def write_dream_checkpoint(path, config, seed=0, **kwargs):
  return write_hf_checkpoint(path, config, tensors=random_dream_tensors(config, seed), **kwargs)


def qwen2_reference(config: ModelConfig, tensors: dict[str, np.ndarray]):
  """transformers' Qwen2 (q/k/v biases, GQA) with bidirectional attention; Dream's names are
  Qwen2's, so the state dict loads as is."""
  ref_config = transformers.Qwen2Config(
      vocab_size=config.vocab_size, hidden_size=config.d_model,
      intermediate_size=config.mlp_hidden_size, num_hidden_layers=config.n_layers,
      num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
      max_position_embeddings=config.max_sequence_length, rms_norm_eps=config.rms_norm_eps,
      rope_theta=config.rope_theta, tie_word_embeddings=config.tie_word_embeddings,
      use_sliding_window=False, is_causal=False, attn_implementation="eager")
  model = transformers.Qwen2ForCausalLM(ref_config).eval()
  for layer in model.model.layers:
    layer.self_attn.is_causal = False
  state = {name: torch.from_numpy(np.asarray(v, np.float32)) for name, v in tensors.items()}
  missing, unexpected = model.load_state_dict(state, strict=False)
  allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
  assert not unexpected and set(missing) <= allowed_missing | {
      k for k in missing if "rotary" in k}, (missing, unexpected)
  if config.tie_word_embeddings:
    model.tie_weights()
  return model


def reference_logits(model, tokens, attention_mask=None):
  """Dream's generate: raw logits, then `cat([logits[:, :1], logits[:, :-1]])`."""
  kwargs = {}
  if attention_mask is not None:
    mask = torch.from_numpy(np.asarray(attention_mask, bool))
    kwargs = dict(attention_mask=mask.long(),
                  position_ids=torch.clamp(mask.long().cumsum(-1) - 1, min=0))
  with torch.no_grad():
    logits = model(torch.from_numpy(np.asarray(tokens, np.int64)), **kwargs).logits
  return torch.cat([logits[:, :1], logits[:, :-1]], dim=1).float().numpy()


def long_prompt(config, seed=0, length=LONG):
  return np.random.default_rng(seed).integers(0, config.vocab_size, (1, length)).astype(np.int32)


# ---------------------------------------------------------------- config

def test_public_dream_config_reads_as_dream_7b():
  config = ModelConfig.from_hf_config(DREAM_7B_HF_CONFIG)
  assert config == dream_7b()
  assert (config.mask_token_id, config.eos_token_id, config.eot_token_id) == (
      151666, 151643, 151645)
  assert config.head_dim == 128 and config.qkv_bias and not config.tie_word_embeddings
  assert config.num_params() == pytest.approx(7.6e9, rel=0.02)


@pytest.mark.parametrize("config", [tiny_dream(), tiny_dream(tie_word_embeddings=True),
                                    dream_7b()])
def test_dream_hf_config_round_trip(config):
  hf = config.to_hf_config()
  assert hf["model_type"] == "Dream" and hf["num_key_value_heads"] == config.n_kv_heads
  assert ModelConfig.from_hf_config(hf) == config


@pytest.mark.parametrize("key, value, message", [
    ("rope_scaling", {"type": "yarn", "factor": 4.0}, "rope_scaling"),
    ("use_sliding_window", True, "use_sliding_window"),
    ("hidden_act", "gelu", "hidden_act='gelu'"),
])
def test_dream_config_rejects_unsupported_settings(key, value, message):
  with pytest.raises(ValueError, match=message):
    ModelConfig.from_hf_config({**DREAM_7B_HF_CONFIG, key: value})


def test_llada_config_cannot_carry_dream_options():
  with pytest.raises(ValueError, match="architecture='dream'"):
    tiny(qkv_bias=True)
  with pytest.raises(ValueError, match="architecture must be one of"):
    tiny(architecture="qwen")


def test_mapping_uses_qwen2_names_and_covers_every_param():
  config = tiny_dream(n_layers=1)
  names = {m.hf_name for m in param_mappings(config)}
  assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
          "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.o_proj.weight",
          "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
          "model.layers.0.post_attention_layernorm.weight"} <= names
  assert "model.layers.0.self_attn.o_proj.bias" not in names  # Qwen2: no o_proj bias
  tied = {m.hf_name for m in param_mappings(tiny_dream(n_layers=1, tie_word_embeddings=True))}
  assert tied == names - {"lm_head.weight"}
  shapes = expected_hf_shapes(config)  # raises if the table misses a param
  assert shapes["model.layers.0.self_attn.k_proj.weight"] == (32, 64)  # [out, in], 2 kv heads
  assert shapes["model.layers.0.self_attn.k_proj.bias"] == (32,)


# ---------------------------------------------------------------- parity

@pytest.mark.parametrize("changes", [{}, {"tie_word_embeddings": True, "n_layers": 1}],
                         ids=["gqa-untied", "tied"])
def test_fp32_parity_with_bidirectional_qwen2_plus_shift(tmp_path, changes):
  config = tiny_dream(**changes)
  tensors = write_dream_checkpoint(tmp_path, config, seed=3)
  tokens = long_prompt(config, seed=4)
  expected = reference_logits(qwen2_reference(config, tensors), tokens)
  model = load_model(tmp_path, dtype=jnp.float32, param_dtype=jnp.float32)
  assert isinstance(model, Dream)
  logits = np.asarray(forward(model, jnp.asarray(tokens)))
  assert np.abs(expected).max() > 1.0  # logits are not trivially small
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
  # The shift: position 0 keeps its output, position i holds the raw output of i - 1.
  np.testing.assert_array_equal(logits[:, 0], logits[:, 1])


def test_left_padded_batch_matches_reference_and_each_prompt_alone(tmp_path):
  config = tiny_dream()
  tensors = write_dream_checkpoint(tmp_path, config, seed=6)
  model = load_model(tmp_path, dtype=jnp.float32)
  ref = qwen2_reference(config, tensors)
  rng = np.random.default_rng(7)
  prompts = [rng.integers(0, 100, n).astype(np.int32) for n in (5, 12)]
  tokens = np.full((2, 12), config.pad_token_id, np.int32)
  mask = np.zeros((2, 12), bool)
  for row, prompt in enumerate(prompts):
    tokens[row, 12 - len(prompt):], mask[row, 12 - len(prompt):] = prompt, True
  batched = np.asarray(forward(model, jnp.asarray(tokens), jnp.asarray(mask)))
  for row, prompt in enumerate(prompts):
    alone = np.asarray(forward(model, jnp.asarray(prompt)[None]))[0]
    # Shifted logits of a left-padded row: the first real position reads a pad's output,
    # every later one matches the prompt alone.
    np.testing.assert_allclose(batched[row][mask[row]][1:], alone[1:], atol=1e-5, rtol=1e-5)
  expected = reference_logits(ref, tokens, mask)
  np.testing.assert_allclose(batched[mask][1:], expected[mask][1:], atol=1e-4, rtol=0)


def test_shift_logits():
  logits = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
  shifted = np.asarray(shift_logits(logits))
  np.testing.assert_array_equal(shifted[:, 1:], np.asarray(logits)[:, :-1])
  np.testing.assert_array_equal(shifted[:, 0], np.asarray(logits)[:, 0])


@pytest.mark.parametrize("start", [0, 1, 5])
def test_windowed_logits_are_the_full_logits_of_the_window(start):
  """`logits_window=(start, length)` (the loop's response window) shifts as the full call."""
  config = tiny_dream(n_layers=1, vocab_size=96)
  model = init_model(config, seed=0)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 90, (2, 12)), jnp.int32)
  full = np.asarray(forward(model, tokens))
  window = np.asarray(jax.jit(lambda t: model(t, logits_window=(start, 6)))(tokens))
  np.testing.assert_allclose(window, full[:, start:start + 6], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- loading, sharding, sampling

def test_missing_bias_is_reported(tmp_path):
  config = tiny_dream(n_layers=1)
  tensors = random_dream_tensors(config)
  del tensors["model.layers.0.self_attn.v_proj.bias"]
  write_hf_checkpoint(tmp_path, config, tensors=tensors)
  with pytest.raises(ValueError, match=r"missing tensor model.layers.0.self_attn.v_proj.bias"):
    load_model(tmp_path)


def test_converted_round_trip_and_sharding_rules(tmp_path):
  config = tiny_dream(n_layers=1)
  write_dream_checkpoint(tmp_path / "hf", config, seed=1)
  model = load_model(tmp_path / "hf", dtype=jnp.float32)
  converted = load_model(save_model(model, tmp_path / "converted"))
  assert converted.config == config
  tokens = jnp.asarray(long_prompt(config, length=24))
  np.testing.assert_array_equal(np.asarray(forward(converted, tokens)),
                                np.asarray(forward(model, tokens)))
  mesh = sh.make_mesh(data=1, model=1)
  specs = {sh._path_name(path): s.spec for path, s in
           sh.param_shardings(abstract_model(config), mesh, sharding_rules(config)).items()}
  assert specs["blocks/0/q_proj/bias"] == sh.P("model")
  assert specs["blocks/0/q_proj/kernel"] == sh.P(None, "model")
  assert specs["ff_out"] == sh.P(None, "model")


def test_sampler_runs_on_dream_and_respects_its_mask_token():
  config = tiny_dream(n_layers=1, vocab_size=96)
  model = init_model(config, seed=0)
  prompt = np.random.default_rng(0).integers(0, 90, (2, 6)).astype(np.int32)
  sampler = SamplerConfig(gen_length=8, block_length=4, steps=4)
  result = generate(model, prompt, sampler, jax.random.key(0))
  response = np.asarray(result.tokens)[:, 6:]
  assert not np.any(response == config.mask_token_id)
  np.testing.assert_array_equal(np.asarray(result.tokens)[:, :6], prompt)
  np.testing.assert_array_equal(np.asarray(result.num_steps), [4, 4])

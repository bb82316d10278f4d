"""HF checkpoint conversion and loading: parity with a PyTorch reference, formats, bad inputs."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    CHAT_TEMPLATE,
    forward,
    random_hf_tensors,
    write_hf_checkpoint,
    write_tokenizer,
)

from lookum_jax import load_model, load_tokenizer, loading, save_model
from lookum_jax.cli import main as run_cli
from lookum_jax.convert import (
    checkpoint,
    convert_checkpoint,
    expected_hf_shapes,
    param_mappings,
)
from lookum_jax.convert.hf import HF_PREFIX
from lookum_jax.model import init_model, llada_8b, tiny

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

P = HF_PREFIX
LONG = 200  # long enough that a RoPE layout or frequency bug shows


# ---------------------------------------------------------------- PyTorch reference

def llama_reference(config, tensors):
  """transformers' Llama with bidirectional attention and LLaDA's weights mapped in."""
  ref_config = transformers.LlamaConfig(
      vocab_size=config.vocab_size, hidden_size=config.d_model,
      intermediate_size=config.mlp_hidden_size, num_hidden_layers=config.n_layers,
      num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
      max_position_embeddings=config.max_sequence_length, rms_norm_eps=config.rms_norm_eps,
      rope_theta=config.rope_theta, attention_bias=False, mlp_bias=False,
      tie_word_embeddings=False, is_causal=False, attn_implementation="eager")
  assert ref_config.rope_parameters["rope_theta"] == config.rope_theta
  assert ref_config.rope_parameters["rope_type"] == "default"
  model = transformers.LlamaForCausalLM(ref_config).eval()
  for layer in model.model.layers:
    layer.self_attn.is_causal = False  # belt and braces; the config already says so
  renames = {"wte.weight": "model.embed_tokens.weight", "ln_f.weight": "model.norm.weight",
             "ff_out.weight": "lm_head.weight"}
  per_block = {"attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm",
               "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
               "v_proj": "self_attn.v_proj", "attn_out": "self_attn.o_proj",
               "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj", "ff_out": "mlp.down_proj"}
  state = {}
  for name, value in tensors.items():
    short = name.removeprefix(P)
    if short.startswith("blocks."):
      _, i, module, param = short.split(".")
      short_ref = f"model.layers.{i}.{per_block[module]}.{param}"
    else:
      short_ref = renames[short]
    state[short_ref] = torch.from_numpy(np.asarray(value, np.float32))
  missing, unexpected = model.load_state_dict(state, strict=False)
  assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
  return model


def reference_logits(model, tokens):
  with torch.no_grad():
    return model(torch.from_numpy(np.asarray(tokens, np.int64))).logits.float().numpy()


PARITY_CONFIGS = {
    "gqa-2layer": tiny(),
    "mha-1layer": tiny(n_layers=1, n_kv_heads=4),
    "gqa3-theta5e5": tiny(d_model=96, n_heads=6, n_kv_heads=2, rope_theta=500000.0),
}


@pytest.fixture(scope="module")
def gqa_checkpoint(tmp_path_factory):
  config = PARITY_CONFIGS["gqa-2layer"]
  path = tmp_path_factory.mktemp("gqa") / "hf"
  tensors = write_hf_checkpoint(path, config, num_shards=2)
  write_tokenizer(path, config.vocab_size, chat_template=CHAT_TEMPLATE)
  return path, config, tensors


def long_prompt(config, seed=0, length=LONG):
  return np.random.default_rng(seed).integers(0, config.vocab_size, (1, length)).astype(np.int32)


def test_reference_is_bidirectional(gqa_checkpoint):
  _, config, tensors = gqa_checkpoint
  ref = llama_reference(config, tensors)
  tokens = long_prompt(config, length=16)
  edited = tokens.copy()
  edited[0, -1] = (edited[0, -1] + 1) % config.vocab_size
  diff = np.abs(reference_logits(ref, tokens)[0, 0] - reference_logits(ref, edited)[0, 0])
  assert diff.max() > 1e-3


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_fp32_parity_with_pytorch_llama(tmp_path, name):
  config = PARITY_CONFIGS[name]
  tensors = write_hf_checkpoint(tmp_path, config, seed=3)
  tokens = long_prompt(config, seed=4)
  expected = reference_logits(llama_reference(config, tensors), tokens)
  model = load_model(tmp_path, dtype=jnp.float32, param_dtype=jnp.float32)
  logits = np.asarray(forward(model, jnp.asarray(tokens)))
  assert np.abs(expected).max() > 1.0  # logits are not trivially small
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_bf16_parity_with_pytorch_llama(tmp_path):
  config = tiny()
  tensors = write_hf_checkpoint(tmp_path, config, dtype="bfloat16", seed=5)
  tokens = long_prompt(config, seed=6)
  expected = reference_logits(llama_reference(config, tensors), tokens)
  model = load_model(tmp_path)  # bf16 params and compute, as stored
  assert model.wte[...].dtype == jnp.bfloat16 and model.dtype == jnp.bfloat16
  logits = np.asarray(forward(model, jnp.asarray(tokens)))
  err = np.abs(logits - expected)
  scale = np.abs(expected).max()
  # Measured: max 0.031, mean 0.005 at scale 4.2 (bf16 eps is 2**-8).
  assert err.max() < 0.025 * scale and err.mean() < 0.004 * scale, (err.max(), err.mean())
  assert (logits.argmax(-1) == expected.argmax(-1)).mean() > 0.9


# ---------------------------------------------------------------- names and formats

def test_mapping_names_match_llada_8b_checkpoint():
  shapes = expected_hf_shapes(llada_8b())
  assert len(shapes) == 32 * 9 + 3
  assert shapes[f"{P}wte.weight"] == (126464, 4096)
  assert shapes[f"{P}ff_out.weight"] == (126464, 4096)
  assert shapes[f"{P}blocks.31.ff_out.weight"] == (4096, 12288)
  assert shapes[f"{P}blocks.0.ff_proj.weight"] == (12288, 4096)
  assert shapes[f"{P}blocks.0.k_proj.weight"] == (4096, 4096)
  assert shapes[f"{P}blocks.7.attn_norm.weight"] == (4096,)
  transposed = {m.hf_name for m in param_mappings(llada_8b()) if m.transform == "transpose"}
  assert f"{P}ff_out.weight" in transposed and f"{P}wte.weight" not in transposed


@pytest.mark.parametrize("layout", [dict(num_shards=1), dict(num_shards=1, write_index=True),
                                    dict(num_shards=3, write_index=False)])
def test_checkpoint_layouts_load_the_same(tmp_path, gqa_checkpoint, layout):
  ref_dir, config, tensors = gqa_checkpoint
  write_hf_checkpoint(tmp_path, config, tensors=tensors, **layout)
  tokens = jnp.asarray(long_prompt(config, length=16))
  np.testing.assert_array_equal(forward(load_model(tmp_path), tokens),
                                forward(load_model(ref_dir), tokens))


def test_bf16_checkpoint_can_be_upcast(tmp_path):
  config = tiny(n_layers=1)
  tensors = write_hf_checkpoint(tmp_path, config, dtype="bfloat16")
  model = load_model(tmp_path, param_dtype=jnp.float32)
  assert model.wte[...].dtype == jnp.float32 and model.dtype == jnp.float32
  np.testing.assert_array_equal(model.ff_out[...], tensors[f"{P}ff_out.weight"].T)
  np.testing.assert_array_equal(model.blocks.q_proj.kernel[...][0],  # stacked by default
                                tensors[f"{P}blocks.0.q_proj.weight"].T)


def test_convert_then_load_matches_hf(tmp_path, gqa_checkpoint):
  hf_dir, config, _ = gqa_checkpoint
  out = convert_checkpoint(hf_dir, tmp_path / "converted", dtype=jnp.float32)
  assert sorted(os.listdir(out)) == ["chat_template.jinja", "config.json", "params",
                                     "tokenizer.json", "tokenizer_config.json"]
  with open(out / "config.json") as f:
    assert json.load(f) == config.to_hf_config()
  tokens = jnp.asarray(long_prompt(config, length=16))
  converted = load_model(out)
  assert converted.config == config
  np.testing.assert_array_equal(forward(converted, tokens), forward(load_model(hf_dir), tokens))
  tokenizer = load_tokenizer(out)
  assert tokenizer("t7 t9")["input_ids"] == [7, 9]
  assert loading.apply_chat_template(tokenizer, "t7") == "<|user|> t7 <|eot|> <|assistant|> "


def test_save_load_round_trip_and_dtype_cast(tmp_path):
  model = init_model(tiny(), seed=1)
  tokens = jnp.asarray(long_prompt(model.config, length=16))
  out = save_model(model, tmp_path / "ckpt")
  np.testing.assert_array_equal(forward(load_model(out), tokens), forward(model, tokens))
  as_bf16 = load_model(out, param_dtype=jnp.bfloat16, dtype=jnp.float32)
  assert as_bf16.blocks.up_proj.kernel[...].dtype == jnp.bfloat16
  assert as_bf16.dtype == jnp.float32


def test_existing_output_is_refused_unless_overwrite(tmp_path, gqa_checkpoint):
  hf_dir, _, _ = gqa_checkpoint
  out = tmp_path / "out"
  out.mkdir()
  (out / "old.txt").write_text("old")
  with pytest.raises(FileExistsError, match="overwrite=True"):
    convert_checkpoint(hf_dir, out)
  assert (out / "old.txt").exists()
  convert_checkpoint(hf_dir, out, overwrite=True)
  assert not (out / "old.txt").exists() and (out / "params").is_dir()
  assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp or backup dirs left
  with pytest.raises(ValueError, match="must not contain the input"):
    convert_checkpoint(hf_dir, hf_dir.parent, overwrite=True)


def test_apply_chat_template_without_template_returns_text(tmp_path):
  write_tokenizer(tmp_path, 32)
  assert loading.apply_chat_template(load_tokenizer(tmp_path), "t7 t8") == "t7 t8"


# ---------------------------------------------------------------- bad inputs

def assert_convert_fails_cleanly(hf_dir, tmp_path, match):
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=match) as error:
    convert_checkpoint(hf_dir, out)
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")], "temp dir left behind"
  return str(error.value)


def test_missing_extra_and_misshaped_tensors_are_all_listed(tmp_path):
  config = tiny()
  tensors = random_hf_tensors(config)
  del tensors[f"{P}blocks.1.up_proj.weight"]
  tensors[f"{P}blocks.0.rotary_emb.inv_freq"] = np.ones(8, np.float32)
  tensors[f"{P}blocks.0.q_proj.weight"] = np.ones((64, 63), np.float32)
  write_hf_checkpoint(tmp_path / "hf", config, tensors=tensors, num_shards=2)
  message = assert_convert_fails_cleanly(tmp_path / "hf", tmp_path, r"3 problem\(s\)")
  assert f"missing tensor {P}blocks.1.up_proj.weight (expected shape [128, 64])" in message
  assert f"unexpected tensor {P}blocks.0.rotary_emb.inv_freq (shape [8])" in message
  assert (f"wrong shape for {P}blocks.0.q_proj.weight: expected [64, 64], got [64, 63]"
          in message)


def test_both_layouts_load_from_both_checkpoint_kinds_and_stored_layouts(tmp_path):
  config = tiny(n_layers=3)
  write_hf_checkpoint(tmp_path / "hf", config)
  tokens = jnp.asarray(long_prompt(config, length=16))
  unrolled = load_model(tmp_path / "hf", scan_layers=False)
  expected = np.asarray(forward(unrolled, tokens))
  scanned = load_model(tmp_path / "hf", scan_layers=True)
  np.testing.assert_array_equal(forward(scanned, tokens), expected)
  stored = {"per-layer": save_model(unrolled, tmp_path / "per-layer"),
            "stacked": convert_checkpoint(tmp_path / "hf", tmp_path / "stacked",
                                          dtype=jnp.float32)}
  for label, directory in stored.items():
    for scan in (False, True):
      model = load_model(directory, scan_layers=scan)
      assert model.scan_layers is scan, (label, scan)
      np.testing.assert_array_equal(forward(model, tokens), expected, err_msg=f"{label} {scan}")
  layer_2 = np.asarray(load_model(stored["per-layer"]).blocks.ff_out.kernel[...][2])
  np.testing.assert_array_equal(layer_2, unrolled.blocks[2].ff_out.kernel[...])


def test_a_missing_layer_is_named_with_the_fix(tmp_path):
  config = tiny(n_layers=3)
  tensors = {k: v for k, v in random_hf_tensors(config).items() if ".blocks.2." not in k}
  write_hf_checkpoint(tmp_path / "hf", config, tensors=tensors)
  message = assert_convert_fails_cleanly(
      tmp_path / "hf", tmp_path, r"layers \[2\] are missing entirely: config.json says "
      r"n_layers = 3, the checkpoint holds 2 layer\(s\) \(0\.\.1\); add the shard file")
  assert f"missing tensor {P}blocks.2.q_proj.weight" in message
  # A converted checkpoint whose config.json claims a layer more than its params hold.
  out = save_model(init_model(tiny(n_layers=2)), tmp_path / "converted")
  (out / "config.json").write_text(json.dumps(tiny(n_layers=3).to_hf_config()))
  with pytest.raises(ValueError, match=r"layers \[2\] are missing entirely"):
    load_model(out)


def test_a_checkpoint_mixing_layouts_is_refused():
  from lookum_jax.convert.checkpoint import stored_layout

  assert stored_layout(["wte", "blocks/0/q_proj/kernel"]) is False
  assert stored_layout(["wte", "blocks/q_proj/kernel"]) is True
  with pytest.raises(ValueError, match="mixes stacked .* and per-layer .* re-save it"):
    stored_layout(["blocks/0/q_proj/kernel", "blocks/k_proj/kernel"])


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop(f"{P}ln_f.weight"), rf"missing tensor {P}ln_f\.weight"),
    (lambda t: t.update({"lm_head.weight": np.ones((2, 2), np.float32)}),
     r"unexpected tensor lm_head\.weight"),
    (lambda t: t.update({f"{P}wte.weight": np.ones((127, 64), np.float32)}),
     rf"wrong shape for {P}wte\.weight: expected \[128, 64\], got \[127, 64\]"),
])
def test_each_bad_tensor_kind_is_a_clear_error(tmp_path, edit, match):
  config = tiny(n_layers=1)
  tensors = random_hf_tensors(config)
  edit(tensors)
  write_hf_checkpoint(tmp_path / "hf", config, tensors=tensors)
  assert_convert_fails_cleanly(tmp_path / "hf", tmp_path, match)


def test_truncated_safetensors_names_the_file(tmp_path):
  hf_dir = tmp_path / "hf"
  write_hf_checkpoint(hf_dir, tiny(n_layers=1), num_shards=2)
  shard = hf_dir / "model-00002-of-00002.safetensors"
  shard.write_bytes(shard.read_bytes()[:-100])
  assert_convert_fails_cleanly(hf_dir, tmp_path,
                               r"model-00002-of-00002\.safetensors is truncated or corrupt")


def test_failed_overwrite_keeps_the_old_output(tmp_path):
  hf_dir = tmp_path / "hf"
  write_hf_checkpoint(hf_dir, tiny(n_layers=1), hf_config={"n_layers": 1})
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "old.txt").write_text("old")
  with pytest.raises(ValueError, match=r"lacks required LLaDA fields \['d_model', 'n_heads'\]"):
    convert_checkpoint(hf_dir, tmp_path / "out", overwrite=True)
  assert sorted(os.listdir(tmp_path)) == ["hf", "out"]
  assert (tmp_path / "out" / "old.txt").read_text() == "old"


def test_error_while_writing_leaves_nothing(tmp_path, gqa_checkpoint, monkeypatch):
  def broken_copy(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(checkpoint, "copy_tokenizer_files", broken_copy)
  with pytest.raises(OSError, match="disk full"):
    convert_checkpoint(gqa_checkpoint[0], tmp_path / "out")
  assert os.listdir(tmp_path) == []


def test_index_naming_a_missing_shard_is_an_error(tmp_path):
  hf_dir = tmp_path / "hf"
  write_hf_checkpoint(hf_dir, tiny(n_layers=1), num_shards=2)
  (hf_dir / "model-00001-of-00002.safetensors").unlink()
  assert_convert_fails_cleanly(hf_dir, tmp_path, r"names shard files that do not exist")


def test_inconsistent_config_raises_model_config_error(tmp_path):
  config = tiny(n_layers=1)
  hf_config = {**config.to_hf_config(), "n_heads": 5}
  write_hf_checkpoint(tmp_path / "hf", config, hf_config=hf_config)
  assert_convert_fails_cleanly(tmp_path / "hf", tmp_path,
                               r"config\.json: ModelConfig\.d_model \(64\) must be divisible "
                               r"by n_heads \(5\)")


def test_directory_without_weights_is_an_error(tmp_path):
  (tmp_path / "hf").mkdir()
  (tmp_path / "hf" / "config.json").write_text(json.dumps(tiny().to_hf_config()))
  with pytest.raises(ValueError, match="neither a converted checkpoint"):
    load_model(tmp_path / "hf")
  assert_convert_fails_cleanly(tmp_path / "hf", tmp_path, r"has no \*\.safetensors files")


def test_unknown_path_is_never_fetched_and_names_embedded_models(tmp_path, monkeypatch):
  monkeypatch.setattr(loading, "_assets_root", lambda: tmp_path / "assets")
  with pytest.raises(ValueError, match=r"available: none\).*never downloads from a model hub"):
    load_model("GSAI-ML/LLaDA-8B-Instruct")
  save_model(init_model(tiny(n_layers=1)), tmp_path / "assets" / "toy-x")
  assert loading.available_models() == ["toy-x"]
  assert load_model("toy-x").config == tiny(n_layers=1)
  with pytest.raises(ValueError, match=r"available: toy-x\)"):
    load_model("toy-y")


# ---------------------------------------------------------------- CLI

def test_cli_convert(tmp_path, gqa_checkpoint, capsys):
  hf_dir, config, _ = gqa_checkpoint
  assert run_cli(["convert", str(hf_dir), str(tmp_path / "out"), "--dtype", "float32"]) == 0
  assert load_model(tmp_path / "out").wte[...].dtype == jnp.float32
  assert run_cli(["convert", str(hf_dir), str(tmp_path / "out")]) == 2
  assert "already exists" in capsys.readouterr().err
  assert run_cli(["convert", str(hf_dir), str(tmp_path / "out"), "--overwrite"]) == 0
  assert load_model(tmp_path / "out").wte[...].dtype == jnp.bfloat16

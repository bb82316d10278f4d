"""The jitted sampler against references: LLaDA's sampler in PyTorch, and our Python loop.

`torch_reference_generate` is an eager port of the public LLaDA `generate()` running on an
independent PyTorch forward (float64) with the JAX model's weights; it consumes the noise
the JAX loop draws (same documented key schedule), so tokens must match exactly, also when
sampling. The random model is sharpened (`random_model`) so that confidences do not tie:
with the default 0.02 init every masked position predicts nearly the same distribution.
"""

import functools
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.reference import generate_python_loop
from lookum_jax.testing import (
    MODEL_CONFIG,
    STRATEGY_CONFIGS,
    decode_kwargs,
    gumbel_uniforms,
    make_prompts,
    random_model,
    random_scores,
)

torch = pytest.importorskip("torch")
from lookum_jax.testing.torch_llada import (  # noqa: E402  (needs torch)
    torch_reference_generate,
)

SEED_EOS = 15  # a seed where both EOS options change the outcome


def reference_tokens(torch_model, prompt, config: SamplerConfig, key, prompt_mask=None):
  """LLaDA's reference sampler on the same weights and the same noise draws."""
  batch = prompt.shape[0]
  c = torch_model.config
  uniforms = (gumbel_uniforms(key, batch, config.steps, config.gen_length, c.vocab_size)
              if config.temperature > 0 else None)
  scores = (random_scores(key, batch, config.steps, config.gen_length)
            if config.strategy.name == "random" else None)
  out = torch_reference_generate(
      torch_model, prompt, steps=config.steps, gen_length=config.gen_length,
      block_length=config.block_length, temperature=config.temperature,
      cfg_scale=config.cfg_scale, remasking=config.strategy.name, mask_id=c.mask_token_id,
      logits_eos_inf=config.logits_eos_inf,
      confidence_eos_eot_inf=config.confidence_eos_eot_inf, eos_id=c.eos_token_id,
      eot_id=c.eot_token_id, uniforms=uniforms, random_scores=scores,
      attention_mask=prompt_mask)
  return out.numpy()


# (strategy, temperature, cfg_scale, gen_length, block_length, steps, batch, options, seed)
def parity_config(case) -> SamplerConfig:
  strategy, temperature, cfg_scale, gen_length, block_length, steps, _, options, _ = case
  return SamplerConfig(gen_length=gen_length, block_length=block_length, steps=steps,
                       temperature=temperature, cfg_scale=cfg_scale,
                       strategy=parse_strategy(strategy), **options)


PARITY_CASES = [
    ("low_confidence", 0.0, 0.0, 16, 4, 8, 3, {}, 0),  # semi-AR, 2 tokens per step
    ("low_confidence", 1.0, 0.0, 16, 16, 16, 2, {}, 1),  # full diffusion, 1 token per step
    ("low_confidence", 0.8, 1.0, 16, 8, 8, 2,  # CFG and both EOS options
     dict(logits_eos_inf=True, confidence_eos_eot_inf=True), SEED_EOS),
    ("random", 0.0, 0.5, 16, 8, 6, 2, {}, 3),  # uneven schedule 3,3,2 per block; CFG
    ("random", 0.5, 0.0, 16, 16, 5, 2, {}, 4),  # full diffusion, schedule 4,3,3,3,3
]
# Two of them are the shared setups (their programs are reused by other tests).
assert STRATEGY_CONFIGS["low_confidence"] == parity_config(PARITY_CASES[1])
assert STRATEGY_CONFIGS["random"] == parity_config(PARITY_CASES[4])


@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: "-".join(map(str, c[:7])))
def test_matches_llada_reference_sampler(models, case):
  *_, steps, batch, options, seed = case
  model, torch_model = models
  config = parity_config(case)
  prompt = np.random.default_rng(seed).integers(6, 120, (batch, 5)).astype(np.int32)
  key = jax.random.key(seed)
  result = generate(model, prompt, config, key)
  expected = reference_tokens(torch_model, prompt, config, key)
  np.testing.assert_array_equal(np.asarray(result.tokens), expected)
  assert np.all(np.asarray(result.nfe) == steps * (2 if config.cfg_scale > 0 else 1))
  if options.get("logits_eos_inf"):
    assert not np.any(expected[:, 5:] == MODEL_CONFIG.eos_token_id)
  for option, value in options.items():  # each option changes the outcome here
    if value:
      without = reference_tokens(torch_model, prompt, config.replace(**{option: False}), key)
      assert np.any(without != expected), f"{option} made no difference; pick another seed"


def test_matches_llada_reference_with_left_padding(models):
  """Rows of different lengths, left-padded, with an attention mask; sampling and CFG."""
  model, torch_model = models
  config = SamplerConfig(gen_length=8, block_length=4, steps=4, temperature=0.9,
                         cfg_scale=0.5, strategy=parse_strategy("random"))
  prompt = np.array([[1, 1, 1, 40, 41], [50, 51, 52, 53, 54]], np.int32)
  prompt_mask = np.array([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]], bool)
  key = jax.random.key(11)
  result = generate(model, prompt, config, key, prompt_mask)
  expected = reference_tokens(torch_model, prompt, config, key, prompt_mask)
  np.testing.assert_array_equal(np.asarray(result.tokens), expected)


def test_torch_forward_matches_jax_forward(models):
  """The reference's forward itself, with padding (a mismatch here voids the tests above)."""
  model, torch_model = models
  tokens = np.random.default_rng(0).integers(0, 128, (2, 24))
  mask = np.ones((2, 24), bool)
  mask[0, :5] = False
  jax_logits = np.asarray(jax.jit(lambda t, m: model(t, m))(tokens, mask))
  torch_logits = torch_model(torch.from_numpy(tokens), torch.from_numpy(mask)).numpy()
  np.testing.assert_allclose(jax_logits[:, 5:], torch_logits[:, 5:], atol=2e-4, rtol=1e-4)
  np.testing.assert_allclose(jax_logits[1], torch_logits[1], atol=2e-4, rtol=1e-4)


# ------------------------------------------------------------------ jit loop == Python loop


@functools.cache
def python_loop_run(strategy: str):
  """The eager Python loop on shared shapes: (result, state after each step, rows per call)."""
  model = random_model(MODEL_CONFIG)
  config = STRATEGY_CONFIGS[strategy]
  calls, states = [], []

  def counting_model(tokens, mask):
    # Not the loop's shape inference (`jax.eval_shape` of the first forward in
    # `init_decode`, which under `disable_jit` evaluates the model eagerly).
    if not any(frame.name == "eval_shape" for frame in traceback.extract_stack()):
      calls.append(tokens.shape[0])
    return model(tokens, mask)

  result = generate_python_loop(counting_model, jnp.asarray(make_prompts(1)), None,
                                jax.random.key(5), config, on_step=states.append,
                                **decode_kwargs(model, config))
  return result, states, calls


@pytest.mark.parametrize("strategy", sorted(STRATEGY_CONFIGS))
def test_jit_loop_equals_python_loop(models, strategy):
  model, _ = models
  config = STRATEGY_CONFIGS[strategy]
  compiled = generate(model, make_prompts(1), config, jax.random.key(5))
  eager, _, calls = python_loop_run(strategy)
  for field in ("tokens", "unmask_order", "nfe", "num_steps"):
    np.testing.assert_array_equal(np.asarray(getattr(compiled, field)),
                                  np.asarray(getattr(eager, field)), err_msg=field)
  # NFE is the forward passes made. Blocks are synchronised across the batch: each opens
  # with a forward that serves its first step, then one per step but the block's last
  # (skipped once every row has committed the block); a row that finished its block earlier
  # is frozen and not charged. A row commits at least one position of the block per step,
  # so its steps in a block are the distinct steps its block positions were committed at.
  order = np.asarray(compiled.unmask_order)[:, -config.gen_length:].reshape(
      -1, config.num_blocks, config.block_length)
  block_steps = np.asarray([[len(np.unique(block)) for block in row] for row in order])
  np.testing.assert_array_equal(block_steps.sum(axis=1), np.asarray(compiled.num_steps))
  assert len(calls) == int(block_steps.max(axis=0).sum()) and set(calls) == {2}
  np.testing.assert_array_equal(np.asarray(compiled.nfe), np.asarray(compiled.num_steps))


@pytest.mark.parametrize("strategy", sorted(STRATEGY_CONFIGS))
def test_step_by_step_commits_are_final(strategy):
  """At every step: the prompt is intact, committed tokens never change, and each row's
  committed set is exactly the response positions whose `unmask_order` is below the number
  of steps the row has taken (a row frozen at the end of its block does not move)."""
  result, states, _ = python_loop_run(strategy)
  final_tokens = np.asarray(result.tokens)
  prompt_length = final_tokens.shape[1] - STRATEGY_CONFIGS[strategy].gen_length
  final_response = final_tokens[:, prompt_length:]
  final_order = np.asarray(result.unmask_order)[:, prompt_length:]
  mask_id = MODEL_CONFIG.mask_token_id
  previous = None
  for state in states:
    tokens = np.asarray(state.tokens)
    response = tokens[:, prompt_length:]
    committed = ~np.asarray(state.masked)  # [B, gen_length]
    taken = np.asarray(state.num_steps)[:, None]
    np.testing.assert_array_equal(committed, (final_order >= 0) & (final_order < taken))
    np.testing.assert_array_equal(np.asarray(state.unmask_order)[committed],
                                  final_order[committed])
    np.testing.assert_array_equal(tokens[:, :prompt_length], make_prompts(1))
    np.testing.assert_array_equal(response[committed], final_response[committed])
    assert np.all(response[~committed] == mask_id)
    if previous is not None:  # nothing committed is ever re-masked
      assert np.all(committed[previous])
    previous = committed
  assert len(states) > 0

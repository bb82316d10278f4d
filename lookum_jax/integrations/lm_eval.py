"""lm-evaluation-harness model `lookum`: any lookum-jax sampler behind lm-eval's tasks.

Importing this module registers the model with lm_eval (`register_model("lookum")`).
lm_eval's own `lm_eval` command has no way to discover a model from another package, so run
lm_eval's command line through this module, which registers the model first:

  python -m lookum_jax.integrations.lm_eval --model lookum --tasks gsm8k \\
      --model_args model=/data/llada-8b-instruct,strategy=threshold,tau=0.9,gen_length=256

`--model_args` (comma-separated key=value):
  model: a local checkpoint directory or a shipped model's name (`toy-sudoku`); alias
    `pretrained`. tokenizer: its directory (default: the model's). dtype: compute dtype.
  Every `SamplerConfig` field: strategy, gen_length, block_length, steps, cache,
    temperature, cfg_scale, logits_eos_inf, ... (gen_length and block_length default to a
    toy model's task.json, else 128 and gen_length; steps to gen_length).
  policy: a trained policy directory, for `strategy=policy` or `policy_lookum`.
  Any other key is a parameter of the strategy: tau, gamma, paths, pool_size, verifier, mode.
  batch_size (lm_eval's --batch_size), seed, prompt_bucket, add_special_tokens; for
    loglikelihood mc_num, mc_batch_size, is_check_greedy.

`generate_until` decodes every request with the sampler (a masked diffusion model fills a
fixed canvas of gen_length tokens, so a task's `max_gen_toks` is not used), cuts the text at
EOS and at the task's `until` strings, and logs the mean NFE. Request i decodes with
`fold_in(key(seed), doc_id)`, as `lookum eval` decodes its example i, so the two agree
token for token on the same problems.

`loglikelihood` is the Monte-Carlo estimate LLaDA's evaluation uses, not an exact
likelihood: a masked diffusion model has no left-to-right factorization. It averages, over
`mc_num` draws of a masking ratio and a mask, the continuation's masked-token log
probabilities weighted by the inverse masking ratio: an unbiased estimate of the ELBO, a
lower bound on log p(continuation | context), with the draws seeded per request. A
one-token continuation is exact. `is_greedy` (only with is_check_greedy=true, as LLaDA
does) decodes the continuation one most-confident token per step and compares.
`loglikelihood_rolling` (perplexity tasks) is not supported.
"""

from __future__ import annotations

import functools
import logging
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

import policy_rl
from lookum_jax.loading import apply_chat_template, load_model, load_tokenizer, resolve_path
from lookum_jax.parsing import parse_sampler, sampler_fields
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.tasks import decode_response, left_pad_prompts
from lookum_jax.tasks.base import round_up
from lookum_jax.toylab import read_task_spec

MODEL_NAME = "lookum"
# Under lm_eval's logger, so its command line shows our lines (mean NFE) with its own.
logger = logging.getLogger("lm_eval.models.lookum")
policy_rl.register_strategies()  # model_args strategy=policy / policy_lookum

_DEFAULT_GEN_LENGTH = 128


def sampler_config_from_model_args(options: dict[str, Any], defaults: Any = None,
                                   policy: Any = None) -> SamplerConfig:
  """The sampler that model_args describe: `SamplerConfig` fields by name, every other key
  a strategy parameter (through the one parser, `lookum_jax.parsing`).

  Args:
    options: model_args without this model's own keys (model, policy, seed, ...).
    defaults: a toy model's task spec (`gen_length`, `block_length`), or None.
    policy: the loaded learned policy; its input features fill the strategy's `features`.

  Raises:
    ValueError: naming a key of the wrong type, or from `SamplerConfig` for bad values.
  """
  fields = sampler_fields()
  sampler = {k: v for k, v in options.items() if k in fields or k == "strategy"}
  params = {k: v for k, v in options.items() if k not in sampler}
  sampler["strategy"] = sampler.get("strategy", "low_confidence")
  if defaults is not None:
    sampler.setdefault("gen_length", defaults.gen_length)
    if sampler["gen_length"] == defaults.gen_length:
      sampler.setdefault("block_length", defaults.block_length)
  sampler.setdefault("gen_length", _DEFAULT_GEN_LENGTH)
  sampler.setdefault("block_length", sampler["gen_length"])
  sampler.setdefault("steps", sampler["gen_length"])
  config = parse_sampler({**sampler, "params": params}, what="model_args")
  features = getattr(policy, "config", None) and policy.config.features
  if features and "features" not in params and hasattr(config.strategy, "features"):
    config = parse_sampler({**sampler, "params": {**params, "features": features}},
                           what="model_args")
  return config


def cut_at_stop_strings(text: str, until: Sequence[str]) -> str:
  """`text` up to the earliest of the `until` strings (lm-eval's stop sequences)."""
  end = len(text)
  for stop in until:
    if stop:
      found = text.find(stop)
      if found != -1:
        end = min(end, found)
  return text[:end]


class LookumLM(LM):
  """A lookum-jax model and sampler as an lm-eval `LM` (see the module docstring)."""

  def __init__(self, model: str | None = None, pretrained: str | None = None,
               tokenizer: str | None = None, policy: str | None = None, dtype: str | None = None,
               batch_size: int | str = 16, seed: int = 0, prompt_bucket: int = 16,
               add_special_tokens: bool = True, mc_num: int = 128, mc_batch_size: int = 32,
               is_check_greedy: bool = False, max_length: int | None = None,
               device: Any = None, max_batch_size: Any = None, **options: Any):
    super().__init__()
    del device, max_batch_size  # JAX places arrays itself; batches have one fixed size
    path = model if model is not None else pretrained
    if path is None:
      raise ValueError("model_args needs model=DIR (a local checkpoint directory) or the name "
                       "of a shipped model, e.g. model=toy-sudoku.")
    model_dir = resolve_path(path)
    if isinstance(batch_size, str):  # lm-eval's "auto": one fixed batch compiles once anyway
      batch_size = int(batch_size) if batch_size.isdigit() else 16
    for name, value in (("batch_size", batch_size), ("prompt_bucket", prompt_bucket),
                        ("mc_num", mc_num), ("mc_batch_size", mc_batch_size)):
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"model_args {name} must be a positive int, got {value!r}.")
    if mc_num % min(mc_batch_size, mc_num):
      raise ValueError(f"model_args mc_num ({mc_num}) must be a multiple of mc_batch_size "
                       f"({mc_batch_size}).")
    self.policy = None
    if policy is not None:
      from policy_rl import load_policy

      self.policy = load_policy(policy)
    self.config = sampler_config_from_model_args(options, read_task_spec(model_dir),
                                                 self.policy)
    if self.policy is not None and self.config.strategy.needs_policy:
      self.config = self.config.with_policy(self.policy)
    if getattr(self.config.strategy, "needs_policy", False) and self.policy is None:
      raise ValueError(f"model_args strategy={self.config.strategy.name} needs policy=DIR, a "
                       "trained policy directory (e.g. that of toy-sudoku: "
                       "lookum_jax/assets/toy-sudoku/policy).")
    self.model = load_model(model_dir, dtype=None if dtype is None else jnp.dtype(dtype))
    self.tokenizer = load_tokenizer(model_dir if tokenizer is None else tokenizer)
    self.model_dir = model_dir
    self.batch_size = batch_size
    self.seed = seed
    self.prompt_bucket = prompt_bucket
    self.add_special_tokens = bool(add_special_tokens)
    self.mc_num, self.mc_batch_size = mc_num, min(mc_batch_size, mc_num)
    self.is_check_greedy = bool(is_check_greedy)
    self.max_length = max_length or self.model.config.max_sequence_length
    self.mask_token_id = (self.config.mask_token_id if self.config.mask_token_id is not None
                          else self.model.config.mask_token_id)
    self.nfe: list[int] = []  # per generate_until request, in request order
    self._graphdef, self._weights = nnx.split(self.model)
    logger.info("lookum: %s, sampler %s", model_dir, self.config)

  # --- lm-eval's interface -----------------------------------------------------------------

  @property
  def tokenizer_name(self) -> str:
    return str(getattr(self.tokenizer, "name_or_path", self.model_dir)).replace("/", "__")

  def chat_template(self, chat_template: bool | str = False) -> str | None:
    return getattr(self.tokenizer, "chat_template", None) or ""

  def apply_chat_template(self, chat_history: list[dict[str, str]],
                          add_generation_prompt: bool = True) -> str:
    if len(chat_history) == 1 and chat_history[0].get("role") == "user":
      return apply_chat_template(self.tokenizer, chat_history[0]["content"],
                                 add_generation_prompt=add_generation_prompt)
    return self.tokenizer.apply_chat_template(
        chat_history, tokenize=False, add_generation_prompt=add_generation_prompt)

  def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
    """One decoded response per request, cut at EOS and at the request's `until` strings."""
    if not requests:
      return []
    gen_length = self.config.gen_length
    room = self.max_length - gen_length
    prompts = [self._encode(request.args[0]) for request in requests]
    truncated = sum(len(p) > room for p in prompts)
    if truncated:
      logger.warning("lookum: %d prompt(s) longer than %d tokens (max_length %d - gen_length "
                     "%d) lose their first tokens.", truncated, room, self.max_length,
                     gen_length)
      prompts = [p[-room:] if len(p) > room else p for p in prompts]
    order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))
    texts: list[str | None] = [None] * len(requests)
    nfe = [0] * len(requests)
    base_key = jax.random.key(self.seed)
    stop_ids = self.model.config.stop_token_ids
    bar = tqdm(total=len(requests), desc="lookum generate_until", disable=disable_tqdm)
    for first in range(0, len(order), self.batch_size):
      index = order[first:first + self.batch_size]
      rows = index + [index[-1]] * (self.batch_size - len(index))  # one shape per bucket
      length = min(round_up(max(len(prompts[i]) for i in index) or 1, self.prompt_bucket),
                   room)
      ids, mask = left_pad_prompts([prompts[i] for i in rows], length, self._pad_id())
      doc_ids = [self._doc_id(requests[i], i) for i in rows]
      keys = jax.vmap(lambda d: jax.random.fold_in(base_key, d))(jnp.asarray(doc_ids))
      result = self._generate(ids, mask, keys)
      tokens, row_nfe = np.asarray(result.tokens), np.asarray(result.nfe)
      for row, i in enumerate(index):
        text = decode_response(self.tokenizer, tokens[row, length:], stop_ids)
        until = (requests[i].args[1] or {}).get("until") or []
        texts[i] = cut_at_stop_strings(text, [until] if isinstance(until, str) else until)
        nfe[i] = int(row_nfe[row])
        self.cache_hook.add_partial("generate_until", requests[i].args, texts[i])
      bar.update(len(index))
    bar.close()
    self.nfe.extend(nfe)
    logger.info("lookum: %d responses, mean NFE %.2f (strategy %s)", len(nfe),
                float(np.mean(nfe)), getattr(self.config.strategy, "name", self.config.strategy))
    return texts

  def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False
                    ) -> list[tuple[float, bool]]:
    """(Monte-Carlo ELBO estimate of log p(continuation | context), is_greedy) per request."""
    out = []
    for request in tqdm(requests, desc="lookum loglikelihood", disable=disable_tqdm):
      context, continuation = request.args
      prefix, target = self._encode_pair(context, continuation)
      room = self.max_length - len(target)
      prefix = prefix[-room:] if len(prefix) > room else prefix
      # Seeded by the texts: an estimate does not depend on the order lm-eval asks in.
      rng = np.random.default_rng([self.seed, zlib.crc32(context.encode()),
                                   zlib.crc32(continuation.encode())])
      estimate = self.mc_loglikelihood(prefix, target, rng)
      greedy = self.is_check_greedy and self.greedy_reproduces(prefix, target)
      out.append((estimate, bool(greedy)))
      self.cache_hook.add_partial("loglikelihood", request.args, out[-1])
    return out

  def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False):
    raise NotImplementedError(
        "lookum: loglikelihood_rolling (perplexity tasks) is not supported; a masked diffusion "
        "model has no left-to-right factorization to roll over long documents.")

  # --- the estimates -----------------------------------------------------------------------

  def mc_loglikelihood(self, prefix: Sequence[int], target: Sequence[int],
                       rng: np.random.Generator) -> float:
    """LLaDA's Monte-Carlo estimate of log p(target | prefix): over `mc_num` draws, mask
    l ~ U{1..L} of the L target tokens (the l of a batch spread evenly over 1..L from a
    random start, as LLaDA does) and weight the masked tokens' log probabilities by L / l."""
    length = len(target)
    if length == 0:
      return 0.0
    sequence = np.asarray([*prefix, *target], np.int32)
    rows = self.mc_batch_size
    total = 0.0
    for _ in range(self.mc_num // rows):
      start = rng.integers(1, length + 1)
      counts = np.round(np.linspace(start, start + (rows - 1) * length / rows, rows))
      counts = ((counts.astype(np.int64) - 1) % length) + 1
      masked = np.zeros((rows, len(sequence)), bool)
      for row, count in enumerate(counts):
        masked[row, len(prefix) + rng.permutation(length)[:count]] = True
      noisy = np.where(masked, self.mask_token_id, sequence[None, :]).astype(np.int32)
      log_probs = np.asarray(self._masked_log_probs(noisy, sequence, masked, len(prefix)))
      total += float(np.sum(log_probs * length / counts))
    return total / self.mc_num

  def greedy_reproduces(self, prefix: Sequence[int], target: Sequence[int]) -> bool:
    """Whether decoding one most-confident token per step from the prefix gives `target`."""
    length = len(target)
    if length == 0:
      return True
    config = SamplerConfig(gen_length=length, block_length=length, steps=length,
                           cfg_scale=self.config.cfg_scale, mask_token_id=self.mask_token_id)
    ids = np.asarray([prefix], np.int32).reshape(1, len(prefix))
    tokens = np.asarray(generate(self.model, ids, config, jax.random.key(self.seed)).tokens)
    return bool(np.array_equal(tokens[0, len(prefix):], np.asarray(target)))

  def _masked_log_probs(self, noisy: np.ndarray, sequence: np.ndarray, masked: np.ndarray,
                        prompt_length: int) -> jax.Array:
    """`[B]` summed log p(true token) over each row's masked positions (CFG as LLaDA's)."""
    return _masked_log_probs(self._graphdef, self._weights, jnp.asarray(noisy),
                             jnp.asarray(sequence), jnp.asarray(masked), prompt_length,
                             float(self.config.cfg_scale), int(self.mask_token_id))

  # --- helpers ------------------------------------------------------------------------------

  def _generate(self, ids: np.ndarray, mask: np.ndarray, keys: jax.Array):
    """The one call to the engine (the config's strategy carries the learned policy)."""
    return generate(self.model, ids, self.config, keys, mask)

  def _encode(self, text: str) -> list[int]:
    return list(self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"])

  def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids as lm-eval's own models split them: trailing spaces of
    the context move to the continuation, and the continuation is what encoding the whole
    text adds after the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
      context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = self._encode(context + continuation)
    prefix = self._encode(context)
    return prefix, whole[len(prefix):]

  def _pad_id(self) -> int:
    pad = self.tokenizer.pad_token_id
    return int(self.model.config.eos_token_id if pad is None else pad)

  @staticmethod
  def _doc_id(request: Any, position: int) -> int:
    doc_id = getattr(request, "doc_id", None)
    return doc_id if isinstance(doc_id, int) and doc_id >= 0 else position


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7))
def _masked_log_probs(graphdef, weights, noisy, sequence, masked, prompt_length: int,
                      cfg_scale: float, mask_token_id: int) -> jax.Array:
  model = nnx.merge(graphdef, weights)
  logits = model(noisy)  # [B, T, V]
  if cfg_scale > 0:
    unconditional = noisy.at[:, :prompt_length].set(mask_token_id)
    plain = model(unconditional)
    logits = plain + (cfg_scale + 1) * (logits - plain)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  true = jnp.take_along_axis(log_probs, jnp.broadcast_to(sequence, noisy.shape)[..., None],
                             axis=-1)[..., 0]  # [B, T]
  return jnp.sum(jnp.where(masked, true, 0.0), axis=-1)


def main(argv: Sequence[str] | None = None) -> None:
  """lm_eval's command line (`lm_eval --model lookum ...`) with the `lookum` model known."""
  from lm_eval.__main__ import cli_evaluate

  saved = sys.argv
  sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
  try:
    cli_evaluate()
  finally:
    sys.argv = saved


if __name__ == "__main__":
  # Run as `python -m`, this file is `__main__`; the model lm_eval finds must be the class of
  # the importable module, so hand over to it (its import registers the model).
  from lookum_jax.integrations.lm_eval import main as _main

  _main()
else:
  register_model(MODEL_NAME)(LookumLM)


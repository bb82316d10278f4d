"""The toy lab's character-level tokenizer and the example <-> token-id helpers.

One token per character (WordLevel over single characters), plus LLaDA-style special tokens:
`<|mask|>` (the diffusion mask), `<|endoftext|>` (EOS; also pads the response, as LLaDA's SFT
does, so the model learns to end answers), `<|pad|>` (left-pads prompts; excluded from
attention), `<|sep|>` (reserved) and `<|unk|>`. Saved as `tokenizer.json` +
`tokenizer_config.json`, so `transformers.AutoTokenizer.from_pretrained(dir)` loads it as a
fast tokenizer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from lookum_jax.tasks.base import Task

if TYPE_CHECKING:
  import transformers

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
SEP_TOKEN = "<|sep|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, MASK_TOKEN, SEP_TOKEN, UNK_TOKEN)
# Every character any task writes, plus lowercase letters and a little punctuation for prompts.
CHARACTERS = "0123456789+-*/()=,:;.?! \nabcdefghijklmnopqrstuvwxyz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Model embedding rows: the tokenizer's size rounded up (LLaDA's vocab is also larger than its
# tokenizer); rows past the tokenizer are never produced by it.
MODEL_VOCAB_SIZE = 64


def _drop_torch_notice(record: logging.LogRecord) -> bool:
  return not str(record.msg).startswith("PyTorch was not found")


def import_transformers():
  """The `transformers` module, imported without its "PyTorch was not found" notice: we use
  only its tokenizers, which need no PyTorch. (A filter on the logger outlives transformers
  resetting the logger's level as it configures itself on import.)"""
  logging.getLogger("transformers").addFilter(_drop_torch_notice)
  import transformers

  return transformers


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
  """The character-level tokenizer (deterministic: same ids on every call)."""
  transformers = import_transformers()
  vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}
  tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
  tok.decoder = decoders.Fuse()  # concatenate characters, no spaces between tokens
  tok.add_special_tokens(list(SPECIAL_TOKENS))
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, mask_token=MASK_TOKEN,
      sep_token=SEP_TOKEN, unk_token=UNK_TOKEN, padding_side="left")


def save_tokenizer(out_dir: str | os.PathLike) -> list[Path]:
  """Writes tokenizer.json and tokenizer_config.json into `out_dir`; returns their paths."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  build_tokenizer().save_pretrained(out_dir)
  config_path = out_dir / "tokenizer_config.json"
  config = json.loads(config_path.read_text())
  # transformers 5 writes its own class name; the 4.x name loads in both major versions.
  config["tokenizer_class"] = "PreTrainedTokenizerFast"
  config_path.write_text(json.dumps(config, indent=2) + "\n")
  return [out_dir / name for name in TOKENIZER_FILES]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
  """transformers, with its log at error level inside the block: `AutoTokenizer` reads the
  sibling config.json, finds model_type "llada" (a class it does not know) and warns, though
  the tokenizer does not depend on it."""
  transformers = import_transformers()
  verbosity = transformers.logging.get_verbosity()
  transformers.logging.set_verbosity_error()
  try:
    yield transformers
  finally:
    transformers.logging.set_verbosity(verbosity)


def load_tokenizer(path: str | os.PathLike) -> transformers.PreTrainedTokenizerBase:
  """Loads a saved tokenizer through `AutoTokenizer`, as any Hugging Face user would."""
  with quiet_transformers() as transformers:
    return transformers.AutoTokenizer.from_pretrained(os.fspath(path))


def model_token_config(tokenizer: transformers.PreTrainedTokenizerBase) -> dict[str, Any]:
  """`ModelConfig` fields fixed by the tokenizer: vocab size and special token ids."""
  if len(tokenizer) > MODEL_VOCAB_SIZE:
    raise ValueError(f"tokenizer has {len(tokenizer)} tokens > MODEL_VOCAB_SIZE={MODEL_VOCAB_SIZE}")
  return dict(vocab_size=MODEL_VOCAB_SIZE, mask_token_id=tokenizer.mask_token_id,
              eos_token_id=tokenizer.eos_token_id, eot_token_id=None,
              pad_token_id=tokenizer.pad_token_id)


def encode_text(tokenizer: transformers.PreTrainedTokenizerBase, text: str) -> list[int]:
  """Token ids of `text`, one per character; raises ValueError on characters outside the
  tokenizer's alphabet instead of mapping them to `<|unk|>`."""
  ids = tokenizer.encode(text, add_special_tokens=False)
  refuse_unknown(tokenizer, text, ids)
  return ids


def refuse_unknown(tokenizer: transformers.PreTrainedTokenizerBase, text: str,
                   ids: Sequence[int]) -> None:
  """Raises ValueError, naming the characters, when `ids` (the encoding of `text`) holds the
  unknown token: the model would read `<|unk|>` where the user wrote something else."""
  unk = tokenizer.unk_token_id
  if unk is None or unk not in ids:
    return
  vocab = tokenizer.get_vocab()
  bad = sorted({ch for ch in text if ch not in vocab})
  where = text.index(bad[0]) if bad else None
  alphabet = "".join(sorted(t for t in vocab if len(t) == 1 and t.isprintable()))
  raise ValueError(
      f"text {text!r} has characters outside the tokenizer's alphabet: {bad or '?'} (first "
      f"at position {where}); the model would read {tokenizer.unk_token} there. Its alphabet: "
      f"{alphabet!r}.")


def encode_example(task: Task, example: dict[str, Any],
                   tokenizer: transformers.PreTrainedTokenizerBase,
                   gen_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(prompt ids, response ids) of an example; the reference response is padded with EOS to
  `gen_length` (default: the task's).

  Raises:
    ValueError: if the example has no reference response, or it is longer than `gen_length`.
  """
  gen_length = task.gen_length if gen_length is None else gen_length
  target = task.target_text(example)
  if target is None:
    raise ValueError(f"{task.name} example {example!r} has no reference response to train on")
  prompt_ids = encode_text(tokenizer, task.prompt_text(example))
  target_ids = encode_text(tokenizer, target)
  if len(target_ids) > gen_length:
    raise ValueError(
        f"reference response {target!r} has {len(target_ids)} tokens > gen_length={gen_length}")
  response_ids = target_ids + [tokenizer.eos_token_id] * (gen_length - len(target_ids))
  return np.asarray(prompt_ids, np.int32), np.asarray(response_ids, np.int32)


def left_pad_prompts(prompts: Sequence[Sequence[int]], prompt_length: int,
                     pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads prompt ids to `prompt_length`: (ids `[B, P]` int32, attention mask `[B, P]`
  bool, false on padding)."""
  ids = np.full((len(prompts), prompt_length), pad_token_id, np.int32)
  mask = np.zeros((len(prompts), prompt_length), bool)
  for row, prompt in enumerate(prompts):
    if len(prompt) > prompt_length:
      raise ValueError(f"prompt {row} has {len(prompt)} tokens > prompt_length={prompt_length}")
    if len(prompt):
      ids[row, prompt_length - len(prompt):] = prompt
      mask[row, prompt_length - len(prompt):] = True
  return ids, mask


def encode_batch(task: Task, examples: Sequence[dict[str, Any]],
                 tokenizer: transformers.PreTrainedTokenizerBase, gen_length: int | None = None,
                 prompt_length: int | None = None) -> dict[str, np.ndarray]:
  """A training batch: prompts left-padded to `prompt_length` (default: the task's bound),
  then the EOS-padded reference responses.

  Returns:
    `tokens` int32 `[B, P + G]`, `attention_mask` bool `[B, P + G]` (false on prompt padding),
    `response_mask` bool `[B, P + G]` (true on the G response positions).
  """
  gen_length = task.gen_length if gen_length is None else gen_length
  prompt_length = task.prompt_length if prompt_length is None else prompt_length
  pairs = [encode_example(task, ex, tokenizer, gen_length) for ex in examples]
  prompt_ids, prompt_mask = left_pad_prompts([p for p, _ in pairs], prompt_length,
                                             tokenizer.pad_token_id)
  responses = np.stack([r for _, r in pairs])
  ones = np.ones_like(responses, bool)
  return {
      "tokens": np.concatenate([prompt_ids, responses], axis=1),
      "attention_mask": np.concatenate([prompt_mask, ones], axis=1),
      "response_mask": np.concatenate([np.zeros_like(prompt_mask), ones], axis=1),
  }


def decode_response(tokenizer: transformers.PreTrainedTokenizerBase,
                    response_ids: Sequence[int] | np.ndarray,
                    stop_token_ids: Sequence[int] | None = None) -> str:
  """Text of generated response ids, cut at the first stop token (default: EOS). Tokens left
  masked stay visible as `<|mask|>`, and ids past the tokenizer (the model's spare embedding
  rows) as `<|unk|>`, so an unfinished or garbled response never scores as correct."""
  stops = {tokenizer.eos_token_id} if stop_token_ids is None else set(stop_token_ids)
  size = len(tokenizer)
  ids = [int(i) if 0 <= int(i) < size else tokenizer.unk_token_id
         for i in np.asarray(response_ids).reshape(-1)]
  for end, token in enumerate(ids):
    if token in stops:
      ids = ids[:end]
      break
  return tokenizer.decode(ids, skip_special_tokens=False)

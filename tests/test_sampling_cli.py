"""`lookum generate`: end to end on a tiny saved checkpoint and tokenizer, and its parsing."""

import re

import jax
import numpy as np
import pytest
from helpers import CHAT_TEMPLATE, write_hf_checkpoint, write_tokenizer

from lookum_jax import load_model, load_tokenizer
from lookum_jax.cli import build_parser, main
from lookum_jax.cli.sampler_args import sampler_config_from_args
from lookum_jax.loading import apply_chat_template
from lookum_jax.model import tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate

# Token ids match the toy tokenizer's specials: <|mask|> 0, <|endoftext|> 1, <|eot|> 2.
VOCAB = 64
MODEL_CONFIG = tiny(vocab_size=VOCAB, mask_token_id=0, eos_token_id=1, eot_token_id=2,
                    pad_token_id=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tiny_llada")
  write_hf_checkpoint(directory, MODEL_CONFIG)
  write_tokenizer(directory, VOCAB, chat_template=CHAT_TEMPLATE)
  return directory


def test_generate_prints_response_nfe_and_times(checkpoint, capsys):
  args = ["generate", "--model", str(checkpoint), "--prompt", "t7 t8 t9",
          "--strategy", "threshold", "--param", "tau=0.5", "--gen-length", "16",
          "--block-length", "8", "--temperature", "0.5", "--seed", "3"]
  assert main(args) == 0
  out = capsys.readouterr().out
  response, stats = out.split("\n--\n")
  # The same generation through the library gives the same text.
  tokenizer = load_tokenizer(checkpoint)
  text = apply_chat_template(tokenizer, "t7 t8 t9")
  assert text != "t7 t8 t9"  # the chat template was applied
  prompt = np.asarray([tokenizer(text)["input_ids"]], np.int32)
  config = SamplerConfig(gen_length=16, block_length=8,
                         strategy=parse_strategy("threshold", {"tau": 0.5}), temperature=0.5)
  result = generate(load_model(checkpoint), prompt, config, jax.random.key(3))
  expected = tokenizer.decode(np.asarray(result.tokens)[0, prompt.shape[1]:],
                              skip_special_tokens=True)
  assert response == expected and re.fullmatch(r"(t\d+ ?)+", response)
  nfe = int(re.search(r"nfe: (\d+)", stats).group(1))
  assert nfe == int(result.nfe[0]) and 1 <= nfe <= 16
  match = re.search(r"time: ([\d.]+)s wall = ([\d.]+)s decoding \(([\d.]+) tokens/s\) \+ "
                    r"([\d.]+)s compile", stats)
  wall, decoding, _, compile_seconds = map(float, match.groups())
  assert compile_seconds > 0 and decoding >= 0
  assert wall == pytest.approx(decoding + compile_seconds, abs=0.02)


def test_generate_without_chat_template_and_bad_inputs(checkpoint, capsys):
  base = ["generate", "--model", str(checkpoint), "--prompt", "t7 t8", "--gen-length", "8",
          "--block-length", "8", "--steps", "4", "--no-chat-template"]
  assert main(base) == 0
  out = capsys.readouterr().out
  assert "nfe: 4  steps: 4  tokens: 8  prompt tokens: 2" in out
  assert main(base + ["--param", "tau=0.5"]) == 2
  assert "unknown parameter(s) ['tau'] for strategy 'low_confidence'" in capsys.readouterr().err
  assert main(base + ["--param", "tau"]) == 2
  assert "--param 'tau' must look like key=value" in capsys.readouterr().err
  assert main(base + ["--strategy", "greedy"]) == 2
  assert "unknown strategy 'greedy'" in capsys.readouterr().err
  assert main(base + ["--block-length", "3"]) == 2
  assert "must be a multiple of block_length (3)" in capsys.readouterr().err
  assert main(["generate", "--model", str(checkpoint / "missing"), "--prompt", "t1"]) == 2
  assert "is not an existing local directory" in capsys.readouterr().err


def test_parse_arguments():
  args = build_parser().parse_args(
      ["generate", "--model", "m", "--prompt", "hi there", "--strategy", "threshold",
       "--param", "tau=0.8", "--gen-length", "64", "--block-length", "16",
       "--temperature", "0.5", "--cfg-scale", "1", "--seed", "4", "--no-chat-template"])
  assert args.func.__name__ == "run_generate"
  assert (args.model, args.prompt, args.seed, args.no_chat_template) == ("m", "hi there", 4,
                                                                         True)
  assert sampler_config_from_args(args) == SamplerConfig(
      gen_length=64, block_length=16, steps=64, temperature=0.5, cfg_scale=1.0,
      strategy=parse_strategy("threshold", {"tau": 0.8}))
  defaults = build_parser().parse_args(["generate", "--model", "m", "--prompt", "x"])
  # Lengths left out are filled from the model's task.json (or 128) by `fill_lengths`; the
  # block then defaults to the whole response, as --help says.
  assert defaults.gen_length is None and defaults.block_length is None
  defaults.gen_length = 128
  assert sampler_config_from_args(defaults) == SamplerConfig(
      gen_length=128, block_length=128, steps=128)
  assert defaults.seed == 0 and not defaults.no_chat_template
  with pytest.raises(SystemExit):
    build_parser().parse_args(["generate", "--prompt", "no model"])

"""`lookum bench` end to end on a tiny random LLaDA: records, resume after a kill (by --limit
and by a truncated last line), config guards, `lookum summarize`, and the sharded loading path
on 8 simulated CPU devices giving the same outputs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import CHAT_TEMPLATE, write_hf_checkpoint, write_tokenizer

from lookum_jax.benchmarks.runner import bucket_length
from lookum_jax.cli import main
from lookum_jax.model import tiny

TESTS_DIR = Path(__file__).parent
QUESTIONS = ["t7 t8 t9 t10 t11 ?", "t12 t13 t14 ?", "t15 t16 t17 t18 t19 t20 t21 t22 ?"]


def bench(args):
  return main(["bench", *args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("bench")
  model_dir = root / "tiny-llada"
  write_hf_checkpoint(model_dir, tiny(), seed=0)
  write_tokenizer(model_dir, 128, chat_template=CHAT_TEMPLATE)
  data = root / "gsm8k.jsonl"
  data.write_text("".join(json.dumps({"question": q, "answer": f"t1 #### {i}"}) + "\n"
                          for i, q in enumerate(QUESTIONS)))
  return root, model_dir, data


def argv(setup, out, *extra, preset="llada:gsm8k:lowconf"):
  _, model_dir, data = setup
  overrides = [f"model_path={model_dir}", f"data_path={data}", "sampler.gen_length=16",
               "sampler.block_length=8", "sampler.steps=16", "batch_size=2",
               "prompt_buckets=(64, 128)", "dtype=float32"]
  args = ["--preset", preset, "--out", str(out), "--no-progress"]
  for override in overrides:
    args += ["--override", override]
  return args + list(extra)


def read(out):
  return [json.loads(line) for line in Path(out).read_text().splitlines()]


def test_run_resume_and_truncated_line(setup, capsys):
  out = setup[0] / "results" / "run.jsonl"
  assert bench(argv(setup, out, "--limit", "2", "--report-memory")) == 0
  first = read(out)
  assert [r["id"] for r in first] == ["gsm8k-0", "gsm8k-1"]
  record = first[0]
  assert record["prompt"].startswith("<|user|> ") and record["prompt"].endswith("<reasoning>")
  for key in ("output", "extracted", "reference", "correct", "score", "nfe", "steps",
              "time_s", "prompt_tokens", "output_tokens", "config"):
    assert key in record, key
  assert record["reference"] == "0" and record["nfe"] == 16 and record["steps"] == 16
  assert record["sampler"] == "lowconf" and record["benchmark"] == "gsm8k"
  logged = capsys.readouterr().out
  assert "2 to run" in logged and "memory stats not available" in logged

  # Rerun without --limit: only the third problem is new; nothing is duplicated.
  assert bench(argv(setup, out)) == 0
  second = read(out)
  assert [r["id"] for r in second] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
  assert second[:2] == first
  assert "2 already in" in capsys.readouterr().out

  # Killed while writing the last record: the fragment is dropped and the problem rerun,
  # with the same output (one PRNG key per problem id).
  text = out.read_text()
  out.write_text(text[:len(text) - len(json.dumps(second[2])) // 2 - 1])
  with pytest.warns(UserWarning, match="truncated last line"):
    assert bench(argv(setup, out)) == 0
  third = read(out)
  assert [r["id"] for r in third] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
  assert third[2]["output"] == second[2]["output"] and third[2]["nfe"] == second[2]["nfe"]

  # Nothing left to do: no model is loaded, the summary is printed.
  assert bench(argv(setup, out)) == 0
  assert "0 to run" in capsys.readouterr().out
  assert main(["summarize", str(out.parent)]) == 0
  assert "lowconf" in capsys.readouterr().out


def test_guards_name_the_fix(setup, capsys):
  out = setup[0] / "results" / "guards.jsonl"
  assert bench(argv(setup, out, "--limit", "1")) == 0
  capsys.readouterr()
  # Another sampler into the same file is refused.
  assert bench(argv(setup, out, "--override", "sampler.steps=8")) == 2
  assert "another configuration" in capsys.readouterr().err
  args = ["--preset", "llada:gsm8k:lookum2", "--out", str(setup[0] / "results" / "unused.jsonl")]
  assert bench(args + ["--override", f"data_path={setup[2]}"]) == 2
  assert "model_path is still a placeholder" in capsys.readouterr().err
  assert bench(args) == 2
  err = capsys.readouterr().err
  assert "model_path is still a placeholder" in err and "data_path is still a placeholder: " \
      "<set data_path: --override data_path=" in err
  policy = ["--preset", "llada:gsm8k:policy"]
  assert bench(policy + ["--override", "model_path=m", "--override", "data_path=d"]
                            ) == 2
  assert "policy_path is still a placeholder: <set policy_path: --policy" in (
      capsys.readouterr().err)
  assert bench(["--config", "configs/nope.py"]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert bench(["--preset", "llada:gsm8k:lookum9"]) == 2
  assert "unknown preset sampler 'lookum9'" in capsys.readouterr().err


def test_lookum_and_learned_policy_samplers(setup, capsys):
  from policy_rl import PolicyConfig, init_policy, save_policy

  policy_dir = save_policy(init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32)),
                           setup[0] / "policy")
  lookum = setup[0] / "results" / "lookum3.jsonl"
  args = argv(setup, lookum, "--limit", "1", preset="llada:gsm8k:lookum3")
  assert bench(args + ["--override", "sampler.steps=8"]) == 0
  [record] = read(lookum)
  assert record["strategy"] == "lookum" and record["steps"] == 8
  assert record["nfe"] > 2 * record["steps"]  # K = 3 look-ahead forwards per step
  learned = setup[0] / "results" / "policy.jsonl"
  args = argv(setup, learned, "--limit", "1", "--policy", str(policy_dir),
              preset="llada:gsm8k:policy")
  assert bench(args) == 0
  [record] = read(learned)
  assert record["strategy"] == "policy" and 1 <= record["steps"] <= 16
  capsys.readouterr()


def test_bucket_length():
  assert bucket_length(40, (64, 128), 16, 256, "p") == 64
  assert bucket_length(100, (64, 128), 16, 256, "p") == 128
  assert bucket_length(130, (64, 128), 16, 256, "p") == 240  # capped by the context
  with pytest.raises(ValueError, match=r"problem 'p': prompt of 250 tokens \+ gen_length 16 "
                                       r"exceeds the model context of 256"):
    bucket_length(250, (64, 128), 16, 256, "p")


# Runs with 8 simulated CPU devices: XLA_FLAGS must be set before jax is imported.
SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from jax.sharding import PartitionSpec as P
    from lookum_jax.benchmarks.runner import load_for_benchmark
    from lookum_jax.cli import build_parser, main
    from lookum_jax.cli.bench import bench_config
    assert jax.device_count() == 8, jax.devices()
    argv = ["bench", *json.loads(sys.argv[1])]
    assert main(argv) == 0
    config = bench_config(build_parser().parse_args(argv))
    model, _, mesh = load_for_benchmark(config)
    assert dict(mesh.shape) == {"data": 4, "model": 2}, mesh
    q = model.blocks.q_proj.kernel[...]  # the runner gets load_model's stacked default
    assert q.sharding.spec == P(None, None, "model") and len(q.addressable_shards) == 8
    print("SHARDED_OK")
""")


@pytest.mark.slow
def test_sharded_run_on_8_devices_matches_single_device(setup):
  single = setup[0] / "results" / "single.jsonl"
  assert bench(argv(setup, single, "--limit", "2")) == 0
  sharded = setup[0] / "results" / "sharded.jsonl"
  args = argv(setup, sharded, "--limit", "2", "--override", "mesh_model=2",
              "--override", "batch_size=4")
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
  env = {**os.environ, "XLA_FLAGS": flags,
         "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
  result = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and "SHARDED_OK" in result.stdout, result.stderr[-3000:]
  for a, b in zip(read(single), read(sharded), strict=True):
    assert (a["id"], a["output"], a["nfe"], a["steps"]) == (b["id"], b["output"], b["nfe"],
                                                            b["steps"])

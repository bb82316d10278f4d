"""The one parser at the edge: names and text parameters -> strategy values and samplers."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from lookum_jax import parsing
from lookum_jax.parsing import parse_sampler, parse_strategy, register_strategy
from lookum_jax.sampling import SamplerConfig
from lookum_jax.sampling.strategies import LowConfidence, Strategy, Threshold


@dataclasses.dataclass(frozen=True)
class _Part:
  """A part of a strategy that is not one (as LookUM's verifier is becoming)."""

  scope: str = "masked"
  cost: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Wrapped(Strategy):
  """A strategy with a strategy-valued parameter, as LookUM's `base` is becoming."""

  name = "wrapped"
  base: Strategy = LowConfidence()
  scale: float = 1.0
  sizes: tuple[int, ...] = (1,)
  part: _Part = _Part()


@pytest.fixture
def table(monkeypatch):
  """A private copy of the name table, with `wrapped` registered into it."""
  monkeypatch.setattr(parsing, "_STRATEGIES", dict(parsing._STRATEGIES))
  register_strategy("wrapped", _Wrapped)
  return parsing._STRATEGIES


def test_text_parameters_get_their_types(table):
  assert parse_strategy("wrapped", {"scale": "2", "sizes": "(2, 3)"}) == _Wrapped(
      scale=2.0, sizes=(2, 3))
  assert parse_strategy("wrapped", {"sizes": 4}).sizes == (4,)
  value = Threshold(tau=0.5)
  assert parse_strategy(value) is value
  with pytest.raises(ValueError, match="given twice"):
    parse_strategy(value, {"tau": 0.7})
  with pytest.raises(ValueError, match=r"--param scale=big: strategy 'wrapped' takes scale as "
                     r"float, got 'big'\."):
    parse_strategy("wrapped", {"scale": "big"})


def test_a_strategy_parameter_takes_a_name_a_dict_or_dotted_keys(table):
  assert parse_strategy("wrapped", {"base": "threshold"}).base == Threshold()
  assert parse_strategy("wrapped", {"base": "threshold", "base.tau": "0.7"}).base == Threshold(
      tau=0.7)
  assert parse_strategy("wrapped", {"base": {"strategy": "threshold", "tau": 0.6}}).base == (
      Threshold(tau=0.6))
  # Dotted keys alone change the default base; a value given as such is kept.
  assert parse_strategy("wrapped", {"base": Threshold(tau=0.8), "base.tau": 0.9}).base == (
      Threshold(tau=0.9))
  with pytest.raises(ValueError, match=r"--param base\.tau=x: strategy 'threshold' takes tau "
                     r"as float"):
    parse_strategy("wrapped", {"base": "threshold", "base.tau": "x"})
  with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gamma'\] for strategy "
                     r"'low_confidence'"):
    parse_strategy("wrapped", {"base.gamma": 1.0})
  with pytest.raises(ValueError, match="unknown strategy 'greedy'"):
    parse_strategy("wrapped", {"base": "greedy"})
  with pytest.raises(ValueError, match="has no parameters of its own"):
    parse_strategy("wrapped", {"scale.x": 1})


def test_a_dataclass_parameter_takes_a_dict_or_dotted_keys(table):
  assert parse_strategy("wrapped", {"part.cost": "0.5"}).part == _Part(cost=0.5)
  assert parse_strategy("wrapped", {"part": {"scope": "common"}, "part.cost": 1}).part == (
      _Part(scope="common", cost=1.0))
  with pytest.raises(ValueError, match=r"--param part: unknown field\(s\) \['size'\] of _Part; "
                     "valid: scope, cost"):
    parse_strategy("wrapped", {"part.size": 1})
  with pytest.raises(ValueError, match=r"--param part\.cost=high: strategy 'wrapped' takes cost "
                     "as float"):
    parse_strategy("wrapped", {"part.cost": "high"})
  with pytest.raises(ValueError, match=r"takes part as a _Part \(a dict, or part\.<field>"):
    parse_strategy("wrapped", {"part": "masked"})


def test_register_strategy_refuses_a_taken_name(table):
  register_strategy("wrapped", _Wrapped)  # the same factory again: a no-op
  with pytest.raises(ValueError, match="strategy name 'threshold' is taken"):
    register_strategy("threshold", _Wrapped)
  # A function factory: its signature lists the parameters.
  register_strategy("strict", lambda tau=0.99: Threshold(tau=tau))
  assert parse_strategy("strict", {"tau": 0.95}) == Threshold(tau=0.95)
  with pytest.raises(ValueError, match=r"valid parameters: tau\."):
    parse_strategy("strict", {"gamma": 1})


def test_parse_sampler_changes_a_base():
  base = SamplerConfig(gen_length=16, block_length=8, steps=8, strategy=Threshold(tau=0.5))
  # Same strategy: parameters change the base's value; another: start from its defaults.
  assert parse_sampler({"params": {"tau": "0.6"}, "steps": "4"}, base=base) == base.replace(
      steps=4, strategy=Threshold(tau=0.6))
  assert parse_sampler({"strategy": "low_confidence"}, base=base).strategy == LowConfidence()
  with pytest.raises(ValueError, match=r"unknown sampler field\(s\) \['stepz'\]; valid: "
                     "block_length"):
    parse_sampler({"stepz": 3})
  with pytest.raises(ValueError, match="model_args cache_refresh=often: the sampler takes "
                     "cache_refresh as int"):
    parse_sampler({"cache_refresh": "often"}, what="model_args")


def test_the_library_names_no_policy_rl_until_an_edge_registers_it():
  """The parser and the benchmark configs load without `policy_rl`; an edge that offers its
  names (here a preset, then the CLI again) registers them through
  `policy_rl.register_strategies`, and registering twice is harmless."""
  code = textwrap.dedent("""
      import sys
      import lookum_jax.benchmarks.presets as presets, lookum_jax.parsing as parsing
      assert "policy" not in parsing.strategy_names(), parsing.strategy_names()
      parsing.parse_strategy("lookum", {"paths": 2})
      assert "policy_rl" not in sys.modules
      assert presets.preset("llada:gsm8k:policy").needs_policy
      assert "policy_rl" in sys.modules and "policy" in parsing.strategy_names()
      from lookum_jax.cli import sampler_args
      assert parsing.parse_strategy("policy", {"mode": "deterministic"}).needs_policy
  """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
  assert done.returncode == 0, done.stderr

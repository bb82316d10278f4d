"""The typed core of the sampler: the loop state, what a strategy sees, and `Strategy`.

Strategies import this module and never the loop (`loop.py`), which imports both. A strategy
is a `pytree_dataclass`: its structure (K, pool size, scopes, modes) is static, part of the
compiled program's key, and its numbers (tau, gamma, temperatures, a policy's weights) are
traced leaves, so a sweep over a number compiles once. See `sampling/README.md` for a new
strategy in thirty lines.

The loop state is lean: between a forward and the step that reads it, the loop carries the
window's per-position statistics (`WindowStats`: candidate tokens and what the strategy
`reads`), computed once right after the forward, not the `[B, W, V]` logits; only a strategy
that declares `Strategy.needs_logits` pays for those (sampling/README.md, "A lean loop
state", says what each consumer does).
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.model.llada import KVCache
from lookum_jax.sampling import refresh, scores

if TYPE_CHECKING:
  from lookum_jax.sampling.config import SamplerConfig
  from lookum_jax.sampling.loop import Forward

T = TypeVar("T")


# ---------------------------------------------------------------------- pytree values

def static_field(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
  """A dataclass field that is structure, not a number: static under `jax.jit` (hashed into
  the program's cache key), e.g. K, a pool size, a mode. Other fields are traced leaves."""
  return dataclasses.field(default=default, metadata={"static": True}, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
  """A frozen dataclass registered as a pytree: `static_field`s (and the names in the class's
  `derived_static` tuple, attributes `__post_init__` computes) form the tree's structure,
  every other field is a child (a number, an array, a nested value).

  Unflattening (inside `jit`, `vmap`, `tree.map`) rebuilds the value without calling
  `__init__`, so `__post_init__` validates only values a user builds; its checks must skip
  leaves that are not concrete numbers (`concrete`), e.g. under `dataclasses.replace` in a trace.
  """
  cls = dataclasses.dataclass(frozen=True)(cls)
  fields = dataclasses.fields(cls)
  children = tuple(f.name for f in fields if not f.metadata.get("static"))
  structure = tuple(f.name for f in fields if f.metadata.get("static"))
  derived = tuple(getattr(cls, "derived_static", ()))

  def flatten_with_keys(value):
    aux = (tuple(getattr(value, n) for n in structure),
           tuple(getattr(value, n) for n in derived))
    return [(jax.tree_util.GetAttrKey(n), getattr(value, n)) for n in children], aux

  def flatten(value):
    return ([getattr(value, n) for n in children],
            (tuple(getattr(value, n) for n in structure),
             tuple(getattr(value, n) for n in derived)))

  def unflatten(aux, leaves):
    value = object.__new__(cls)
    for names, values in ((structure, aux[0]), (derived, aux[1]), (children, leaves)):
      for name, item in zip(names, values, strict=True):
        object.__setattr__(value, name, item)
    return value

  jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
  return cls


def concrete(value: Any) -> float | None:
  """`value` as a Python number, or None for a tracer (a traced knob cannot be checked)."""
  if isinstance(value, numbers.Number):
    return value
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def check_number(owner: str, name: str, value: Any, ok: Callable[[float], bool],
                 requirement: str) -> None:
  """Raises `ValueError("{owner} {name} must be {requirement}, got ...")` for a concrete
  `value` that fails `ok`; traced values pass."""
  number = concrete(value)
  if number is not None and not ok(number):
    subject = f"{owner} {name}" if name else owner
    raise ValueError(f"{subject} must be {requirement}, got {value!r}.")


def check_unit_interval(owner: str, name: str, value: Any) -> None:
  check_number(owner, name, value, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


# ---------------------------------------------------------------------- what a step sees

ALL_STATISTICS: frozenset[str] = frozenset(scores.STATISTICS)


@struct.dataclass
class StepView:
  """What a per-sequence strategy sees at one step, over the window of W response positions.

  The loop computes the per-position statistics a strategy reads (`Strategy.reads`) once,
  right after each forward, and carries them (`WindowStats`) instead of the logits; a
  statistic the strategy does not read is None. A strategy that declares `needs_logits`
  gets the logits (and every statistic, computed from them each step).

  Attributes:
    logits: `[W, V]` float32 logits of the current canvas (after CFG / EOS options), only
      for a strategy that carries them (`Strategy.carries_logits`); else None.
    candidates: `[W]` the token each position would receive (argmax, Gumbel-noised
      when temperature > 0; never the mask token).
    confidence: `[W]` softmax probability of `candidates`.
    certainty: `[W]` log-odds of `candidates`, `log p - log(1 - p)`, computed from the
      logits so that probabilities that round to 1.0 in float32 still rank apart. Rank by
      this; compare `confidence` with thresholds.
    entropy: `[W]` Shannon entropy (nats) of each position's predictive distribution.
    margin: `[W]` top-1 minus top-2 softmax probability of each position.
    eligible: `[W]` masked and inside the current block: the only committable positions.
    masked: `[W]` positions still masked (eligible or in a later block).
    demoted: `[W]` positions to commit only after every other eligible one
      (`confidence_eos_eot_inf`: candidate is EOS/EOT).
    num_transfer: `[]` int32 the schedule's commit count for this step.
    positions: `[W]` int32 response index of each window position (0 = first response
      token); key per-position randomness on it (`scores.position_uniform`) so that a draw
      does not depend on the window's extent or the batch's padding.
    observed: what the strategy computes of each forward's logits itself
      (`Strategy.observe`, e.g. a learned policy's input features), or None.
    mask_token_id: the mask token (never a candidate).
  """

  logits: jax.Array | None
  candidates: jax.Array
  confidence: jax.Array | None
  certainty: jax.Array | None
  entropy: jax.Array | None
  margin: jax.Array | None
  eligible: jax.Array
  masked: jax.Array
  demoted: jax.Array
  num_transfer: jax.Array
  positions: jax.Array
  observed: Any = None
  mask_token_id: int | None = struct.field(pytree_node=False, default=None)

  @classmethod
  def of_logits(cls, logits: jax.Array, candidates: jax.Array, **fields: Any) -> StepView:
    """A view whose per-position statistics (confidence, certainty, entropy, margin) are
    computed from `logits [..., W, V]` and `candidates [..., W]`; `fields` gives the rest."""
    return cls(logits=logits, candidates=candidates,
               **statistics_of(logits, candidates, ALL_STATISTICS), **fields)


def statistics_of(logits: jax.Array, candidates: jax.Array, names: frozenset[str]
                  ) -> dict[str, jax.Array | None]:
  """The statistics `names` of `logits [..., W, V]` and `candidates [..., W]` (`[..., W]`
  each), None for the others."""
  return {name: (function(logits, candidates) if name in names else None)
          for name, function in scores.STATISTICS.items()}


@struct.dataclass
class WindowStats:
  """What the loop keeps of one forward's window logits `[..., W, V]` until the next step's
  view, per position (`[..., W]`).

  A lean window (the default): the candidate tokens, the statistics the strategy reads
  (`Strategy.reads`; the others None) and what it observes (`Strategy.observe`), all computed
  right after the forward, with the Gumbel noise of the step that will read them. Nothing
  vocabulary-sized is carried. A strategy that carries the logits (`carries_logits`) keeps
  `logits` alone, and its view computes everything from them (as the loop always did).
  """

  candidates: jax.Array | None = None  # [..., W] int32
  confidence: jax.Array | None = None
  certainty: jax.Array | None = None
  entropy: jax.Array | None = None
  margin: jax.Array | None = None
  observed: Any = None
  logits: jax.Array | None = None  # [..., W, V] float32, only when carried


@struct.dataclass
class LoopState:
  """Carried through the loop. B rows, G = gen_length, W = window, T = prompt + G."""

  tokens: jax.Array  # [B, T] int32 canvas
  window: WindowStats  # [B, W] statistics of the model's output over the window for `tokens`
  masked: jax.Array  # [B, G] bool, response positions still to decode
  unmask_order: jax.Array  # [B, G] int32, step at which committed; -1 uncommitted
  step_in_block: jax.Array  # [B] int32
  num_steps: jax.Array  # [B] int32, denoising steps taken
  nfe: jax.Array  # [B] int32, forward passes spent
  forward_tokens: jax.Array  # [B] int32, query positions those forwards processed
  row_keys: jax.Array  # [B] PRNG keys
  block: jax.Array  # [] int32, block being decoded (every row is in the same block)
  block_step: jax.Array  # [] int32, loop iterations in this block
  cache: KVCache | None
  strategy_state: Any

  # Fields that belong to a row rather than to the path it decodes: a resampled particle
  # keeps its own key stream and its own forward count.
  ROW_OWN: ClassVar[tuple[str, ...]] = ("nfe", "forward_tokens", "row_keys", "block",
                                        "block_step", "strategy_state")

  def take_paths(self, source: jax.Array) -> LoopState:
    """Each row `i` continues the path of row `source[i]`: every field but `ROW_OWN` (the
    canvas, window statistics, masks, step counters, KV cache, and any field added later) is
    gathered with a tree map. The window's candidates were drawn with the source row's noise
    key, so a strategy that resamples under sampling carries the logits (`SMC`)."""
    rows = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in self.ROW_OWN and f.name != "cache"}
    moved = jax.tree.map(lambda a: a[source], rows)
    cache = jax.tree.map(lambda a: a[:, source], self.cache)  # [layers, B, ...]
    return self.replace(cache=cache, **moved)



def row_keys_from(key: jax.Array, batch_size: int) -> jax.Array:
  """One key per row: the given `[B]` keys, or `fold_in(key, row)` from a single key."""
  key = jnp.asarray(key)
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.dtype != jnp.uint32 or key.ndim == 0 or key.shape[-1] != 2:
      raise ValueError(f"key must be a jax.random.key(seed) or [B] such keys (or legacy "
                       f"PRNGKey data [..., 2] uint32), got {key.dtype} {key.shape}.")
    key = jax.random.wrap_key_data(key)
  if key.ndim == 0:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size))
  if key.shape != (batch_size,):
    raise ValueError(f"key must be a single key or one key per row ({batch_size},), "
                     f"got shape {key.shape}.")
  return key



# ---------------------------------------------------------------------- strategies

@dataclasses.dataclass(frozen=True)
class Strategy:
  """Base of every unmasking strategy; subclass it as a `pytree_dataclass`.

  A per-sequence rule overrides `select(view, key) -> commit [W]`, which the loop `vmap`s
  over the batch. A strategy that needs more (look-ahead forwards, a learned policy, its own
  carried state) overrides `step(ctx, state)`, and `init_state` for its carried state.

  What the loop carries for it between a forward and the next step's view is what it reads:
  the candidate tokens, the statistics named in `reads` (computed once, right after each
  forward) and what `observe` returns. Only a strategy that declares `needs_logits` pays for
  the full distribution (`[B, W, V]` float32 carried through the loop).

  Class attributes:
    name: the strategy's name at the command line and in configs.
    needs_policy: the strategy reads a learned policy's weights, which the value must carry.
    needs_logits: the strategy reads `view.logits` (the full distribution, e.g. a KL between
      steps): the loop carries the window's float32 logits, and the view computes every
      statistic from them. Otherwise `view.logits` is None and nothing `[B, W, V]` is carried.
    reads: the `StepView` statistics the strategy reads, of "confidence", "certainty",
      "entropy", "margin" (`scores.STATISTICS`); the others are None in its view. Default:
      all of them.
  """

  name: ClassVar[str] = ""
  needs_policy: ClassVar[bool] = False
  needs_logits: ClassVar[bool] = False
  reads: ClassVar[frozenset[str]] = ALL_STATISTICS

  @property
  def uses_schedule(self) -> bool:
    """Commits `num_transfer` tokens per step (needs `steps`); otherwise it decides the count
    itself and a block lasts until it is fully committed."""
    return True

  def select(self, view: StepView, key: jax.Array) -> jax.Array:
    """Per-sequence selection: `commit [W]` bool, a subset of `view.eligible`."""
    raise NotImplementedError(f"{type(self).__name__} defines neither select nor step.")

  def step(self, ctx: StepContext, state: LoopState) -> LoopState:
    """One batched step; it must add the forward passes it spends to `state.nfe`.
    Default: `select`, commit, forward."""
    return ctx.select_step(state, self.select)

  def statistics(self) -> frozenset[str]:
    """The statistics the loop computes after each forward (default `reads`; a strategy
    built from parts, such as LookUM, unites its parts')."""
    return self.reads

  def carries_logits(self, config: SamplerConfig) -> bool:
    """Whether the loop carries the window's logits for this strategy under `config`: it
    declares `needs_logits`, or the configuration needs them (SMC's resampling under
    sampling; LookUM drawing tokens from the distribution)."""
    del config
    return self.needs_logits

  def observe(self, ctx: StepContext, logits: jax.Array) -> Any:
    """What the strategy computes of a forward's logits `[..., W, V]` beyond the shared
    statistics (a pytree of `[..., W, ...]` arrays, e.g. a policy's input features), carried
    to the next step's `view.observed`. Default: nothing."""
    del ctx, logits
    return None

  def init_state(self, ctx: StepContext, batch_size: int) -> Any:
    """The strategy's own state carried through the loop (default: none)."""
    del ctx, batch_size
    return None

  def check(self, config: SamplerConfig) -> None:
    """Raises `ValueError` for a `SamplerConfig` this strategy cannot run with."""
    del config

  def check_ready(self) -> None:
    """Raises `ValueError` before any work when the value lacks something it reads (a learned
    policy's weights)."""

  def with_policy(self, policy: Any) -> Strategy:
    """This strategy reading the learned policy module `policy` (for strategies that read one)."""
    raise ValueError(f"strategy {self.name!r} reads no learned policy; drop the policy.")

  def decode(self, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs the loop: `run(*args, **kwargs)` (`loop.decode_core`). A strategy that needs the
    rows arranged otherwise (SMC's particles) wraps it here, outside the loop core."""
    return run(*args, **kwargs)

  def to_dict(self) -> dict[str, Any]:
    """The strategy's JSON form: its parameters (`from_params` reads them back)."""
    return dataclasses.asdict(self)

  @classmethod
  def param_names(cls) -> tuple[str, ...]:
    """The parameter names `from_params` takes."""
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def param_types(cls) -> dict[str, Any]:
    """Annotated types of the parameters (command-line values are converted to them)."""
    hints = typing.get_type_hints(cls)
    return {name: hints.get(name, Any) for name in cls.param_names()}

  @classmethod
  def from_params(cls, params: dict[str, Any]) -> Strategy:
    """The value of a parameter dict (the JSON form, `to_dict`)."""
    return cls(**params)

  def label(self) -> str:
    """A short human-readable name with the parameters that differ from the defaults."""
    defaults = type(self)().to_dict()
    changed = [f"{name}={value}" for name, value in self.to_dict().items()
               if value != defaults.get(name)]
    return self.name + (f"({', '.join(changed)})" if changed else "")


# ---------------------------------------------------------------------- the step context

@dataclasses.dataclass(frozen=True)
class StepContext:
  """Everything a step needs besides the loop state, built once per trace: the config, the
  model as a forward function, the window's geometry and the step parts strategies compose
  (`view`, `commit`, `lookahead`, `window_stats`, `refresh_logits`, `charge`).

  `static_block` is the block index when blocks run in a Python loop (the eager reference),
  else None and the block index is `state.block`.
  """

  config: SamplerConfig
  forward: Forward
  attention_mask: jax.Array | None  # [B, T]
  prompt_length: int
  mask_token_id: int
  stop_token_ids: tuple[int, ...]
  schedule: jax.Array  # [steps_per_block] int32
  targets: jax.Array | None = None  # [B, G] reference response (oracle controls), or None
  static_block: int | None = None

  # ------------------------------------------------------------------ geometry
  @property
  def window_length(self) -> int:
    return self.config.window_length

  @property
  def forward_cost(self) -> int:
    return self.forward.cost

  def block_of(self, state: LoopState) -> jax.Array | int:
    return state.block if self.static_block is None else self.static_block

  def block_start(self, state: LoopState) -> jax.Array | int:
    """Response index of the current block's first position."""
    return self.block_of(state) * self.config.block_length

  def window_start(self, state: LoopState) -> jax.Array | int:
    """Response index of the window's first position."""
    return self.config.cache.window_start(self, state)

  def window_positions(self, state: LoopState) -> jax.Array:
    """`[W]` response index of each window position."""
    return self.window_start(state) + jnp.arange(self.window_length, dtype=jnp.int32)

  def in_block(self, state: LoopState) -> jax.Array:
    """`[W]` window positions inside the current block."""
    pos = self.window_positions(state)
    start = self.block_start(state)
    return (pos >= start) & (pos < start + self.config.block_length)

  def window_of(self, array: jax.Array, state: LoopState, offset: int = 0) -> jax.Array:
    """The window's slice `[B, W, ...]` of a per-position array `[B, offset + G, ...]`."""
    return jax.lax.dynamic_slice_in_dim(array, offset + self.window_start(state),
                                        self.window_length, axis=1)

  def window_masked(self, state: LoopState) -> jax.Array:
    return self.window_of(state.masked, state)

  def eligible(self, state: LoopState) -> jax.Array:
    """`[B, W]` masked positions inside the current block."""
    return self.window_masked(state) & self.in_block(state)[None]

  def active(self, state: LoopState) -> jax.Array:
    """`[B]` rows whose current block still has masked positions."""
    return jnp.any(self.eligible(state), axis=-1)

  # ------------------------------------------------------------------ step parts
  def step_keys(self, state: LoopState) -> tuple[jax.Array, jax.Array]:
    """Per-row keys for this step: (noise key, strategy key), from the row key and the row's
    own step count."""
    keys = jax.vmap(lambda k, n: jax.random.split(jax.random.fold_in(k, n)))(
        state.row_keys, state.num_steps)
    return keys[:, 0], keys[:, 1]

  @property
  def lean(self) -> bool:
    """The loop carries statistics, not logits (see `WindowStats`)."""
    return not self.config.strategy.carries_logits(self.config)

  def _candidates(self, state: LoopState, logits: jax.Array, noise_keys: jax.Array
                  ) -> jax.Array:
    """Candidate tokens `[B, W]` of window logits `[B, W, V]`, one noise key per row."""
    cfg = self.config
    positions = self.window_positions(state)
    return jax.vmap(
        lambda lg, k: scores.gumbel_argmax(lg, cfg.noise_temperature, k, positions,
                                           self.mask_token_id))(logits, noise_keys)

  def window_stats(self, state: LoopState, logits: jax.Array) -> WindowStats:
    """What the loop carries of a forward's window logits `[B, W, V]` for `state` (the
    canvas after the commit): the logits themselves for a strategy that carries them; else
    the candidates, drawn with the noise key of the step that will read them (the row's
    step count), the strategy's statistics and what it observes."""
    if not self.lean:
      return WindowStats(logits=logits)
    strategy = self.config.strategy
    noise_keys, _ = self.step_keys(state)
    candidates = self._candidates(state, logits, noise_keys)
    return WindowStats(candidates=candidates,
                       **statistics_of(logits, candidates, strategy.statistics()),
                       observed=strategy.observe(self, logits))

  def entropy(self, state: LoopState) -> jax.Array:
    """`[B, W]` entropy of the current window (carried, or from the carried logits); the
    strategy must read "entropy"."""
    window = state.window
    return window.entropy if window.logits is None else scores.entropy(window.logits)

  def view(self, state: LoopState, noise_keys: jax.Array) -> StepView:
    """Candidates and statistics of the window (batched `[B, ...]`): the carried ones, or,
    when the logits are carried, computed from them with `noise_keys`."""
    cfg, window = self.config, state.window
    positions = self.window_positions(state)
    if window.logits is None:
      candidates, observed = window.candidates, window.observed
      statistics = {name: getattr(window, name) for name in scores.STATISTICS}
    else:
      candidates = self._candidates(state, window.logits, noise_keys)
      observed = cfg.strategy.observe(self, window.logits)
      statistics = statistics_of(window.logits, candidates, ALL_STATISTICS)
    if cfg.confidence_eos_eot_inf:
      demoted = jnp.isin(candidates, jnp.asarray(self.stop_token_ids))
    else:
      demoted = jnp.zeros_like(candidates, dtype=bool)
    index = jnp.minimum(state.step_in_block, self.schedule.shape[0] - 1)
    batch = candidates.shape[0]
    return StepView(
        logits=window.logits, candidates=candidates, **statistics,
        eligible=self.eligible(state), masked=self.window_masked(state), demoted=demoted,
        num_transfer=self.schedule[index],
        positions=jnp.broadcast_to(positions, (batch, positions.shape[0])),
        observed=observed, mask_token_id=self.mask_token_id)

  def commit(self, state: LoopState, commit: jax.Array, candidates: jax.Array) -> LoopState:
    """Writes committed candidates `[B, W]` into the canvas; advances step bookkeeping."""
    active = self.active(state)
    commit = commit & self.eligible(state) & active[:, None]
    start, p = self.window_start(state), self.prompt_length
    write = lambda array, new, offset=0: jax.lax.dynamic_update_slice_in_dim(
        array, jnp.where(commit, new, self.window_of(array, state, offset)), offset + start,
        axis=1)
    steps = jnp.broadcast_to(state.num_steps[:, None], commit.shape)
    step = active.astype(jnp.int32)
    return state.replace(
        tokens=write(state.tokens, candidates, p),
        masked=write(state.masked, jnp.zeros_like(commit)),
        unmask_order=write(state.unmask_order, steps),
        step_in_block=state.step_in_block + step, num_steps=state.num_steps + step)

  def canvas_window(self, state: LoopState) -> jax.Array:
    """`[B, W]` the canvas over the window."""
    return self.window_of(state.tokens, state, self.prompt_length)

  def _forward_window(self, state: LoopState, window_tokens: jax.Array) -> jax.Array:
    """Logits `[B, K, W, V]` of K candidate canvases that differ from `state.tokens` only
    over the window (`window_tokens [B, K, W]`): the cache mode's step forward."""
    return self.config.cache.forward_window(self, state, window_tokens)

  def lookahead(self, state: LoopState, commits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Logits `[B, K, W, V]` of K look-ahead canvases per row, all in one model call:
    candidate k commits `tokens[:, k]` at `commits[:, k]` (`[B, K, W]`)."""
    window_tokens = jnp.where(commits, tokens, self.canvas_window(state)[:, None])
    return self._forward_window(state, window_tokens)

  def step_tokens(self, state: LoopState) -> int | jax.Array:
    """Query positions a (non-refresh) step forward processes per canvas in the current
    block (`CacheMode.step_tokens`)."""
    return self.config.cache.step_tokens(self, state)

  def charge(self, state: LoopState, forwards: jax.Array,
             tokens: jax.Array | int | None = None) -> LoopState:
    """Adds `forwards [B]` forwards (each times the CFG cost) to each row's NFE, each of
    `tokens` query positions (default: a step forward's, `step_tokens()`)."""
    n = forwards.astype(jnp.int32) * self.forward_cost
    tokens = self.step_tokens(state) if tokens is None else tokens
    return state.replace(nfe=state.nfe + n, forward_tokens=state.forward_tokens + n * tokens)

  def refresh_logits(self, state: LoopState) -> LoopState:
    """The forward for the canvas after a commit, unless no row is still in its block: the
    window against the cache, or a full refresh when one is due (the config's refresh
    schedule, `refresh.Refresh.step_forward`); the state keeps its `window_stats`."""
    return self.config.refresh_schedule.step_forward(self, state)

  def select_step(self, state: LoopState,
                  select: Callable[[StepView, jax.Array], jax.Array]) -> LoopState:
    """One step of a per-sequence rule `select(view, key) -> commit [W]`: select, commit,
    forward."""
    noise_keys, select_keys = self.step_keys(state)
    view = self.view(state, noise_keys)
    commit = jax.vmap(select)(view, select_keys)
    return self.refresh_logits(self.commit(state, commit, view.candidates))

  # ------------------------------------------------------------------ blocks
  def _full_forward(self, state: LoopState) -> tuple[jax.Array, KVCache | None]:
    """The window's logits and (with a cache) every position's keys/values."""
    return refresh.full_forward(self, state)

  def start_block(self, state: LoopState, block: jax.Array | int) -> LoopState:
    """Enters `block`: one full forward (storing the cache) serves its first step, or the
    vicinity's (`SamplerConfig.block_start`)."""
    state = state.replace(block=jnp.asarray(block, jnp.int32), block_step=jnp.int32(0),
                          step_in_block=jnp.zeros_like(state.step_in_block))
    logits, cache, tokens = self.config.block_start.start_block(self, state)
    every_row = jnp.ones(state.nfe.shape, jnp.int32)  # every row's block starts masked
    window = self.window_stats(state, logits)
    return self.charge(state.replace(window=window, cache=cache), every_row, tokens)

  def block_continues(self, state: LoopState) -> jax.Array:
    """Whether the block's loop runs another step: a row still in it, step budget left."""
    return jnp.any(self.active(state)) & (state.block_step < self.config.max_block_steps)

  def step(self, state: LoopState) -> LoopState:
    """One iteration of a block's loop: the strategy's step, then the iteration count."""
    state = self.config.refresh_schedule.after_step(self, self.config.strategy.step(self, state))
    return state.replace(block_step=state.block_step + 1)



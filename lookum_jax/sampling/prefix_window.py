"""The prefix cache's step windows: which response positions a cached step forwards.

Under `cache="prefix"` (Fast-dLLM's prefix cache) a step recomputes every position from the
current block's start to the canvas end, against the cached keys/values of the prompt and the
finished blocks. Block `b` of `n` thus needs `R_b = G - b * block_length` queries, a length
that shrinks block by block, while one compiled program needs static shapes.

`prefix_windows` groups the blocks into at most `max_shapes` static window lengths: the
blocks of a group (consecutive, since `R_b` decreases) share the longest `R` among them, and
their window is the canvas tail `[T - L, T)`; a block shorter than its group's length also
forwards the `L - R_b` finished positions before its start, whose outputs are dropped (and
which attend through their cached keys/values, as the prefix they belong to). The grouping
minimises the total queries over the blocks. With `max_shapes >= n` every block gets its own
length and forwards exactly `R_b`, as Fast-dLLM's `x[block_start:]` does. The step selects its
length with `lax.switch` on the block index, so the loop stays one program whose compile
holds one window forward per shape.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

# One window shape per block up to this many blocks (8 = G 256 / block 32 exactly); past it,
# blocks share lengths. Compile time grows with the number of shapes (a program compiled
# before a change of this number keeps its shapes; `experiments/bench_peer.py
# --prefix-shapes N` sets it for one run).
MAX_PREFIX_SHAPES = 8


class PrefixWindows(NamedTuple):
  """`lengths[i]`: the window length of shape i (decreasing in i); `cached_response[i]`: the
  response positions shape i reads from the cache (those before its group's latest block
  start); `shape_of[b]`: block b's shape; `length_of[b]`: block b's window length."""

  lengths: tuple[int, ...]
  cached_response: tuple[int, ...]
  shape_of: tuple[int, ...]

  @property
  def length_of(self) -> tuple[int, ...]:
    return tuple(self.lengths[i] for i in self.shape_of)


def prefix_windows(gen_length: int, block_length: int,
                   max_shapes: int | None = None) -> PrefixWindows:
  """The window lengths of the prefix cache's steps (see the module docstring); at most
  `max_shapes` of them (default `MAX_PREFIX_SHAPES`, read at the call).

  `cached_response[i]` is the number of response positions before the latest block start
  of shape i's group: its window attends to the cache up to there (`LLaDA.extend`'s
  `cache_keys = P + cached_response[i]`) and recomputes the rest.
  """
  max_shapes = MAX_PREFIX_SHAPES if max_shapes is None else max_shapes
  if gen_length <= 0 or block_length <= 0 or gen_length % block_length:
    raise ValueError(f"gen_length {gen_length} must be a positive multiple of block_length "
                     f"{block_length}.")
  if max_shapes < 1:
    raise ValueError(f"max_shapes must be >= 1, got {max_shapes}.")
  return _grouped(gen_length, block_length, max_shapes)


@functools.lru_cache(maxsize=64)
def _grouped(gen_length: int, block_length: int, max_shapes: int) -> PrefixWindows:
  n = gen_length // block_length
  remaining = [gen_length - b * block_length for b in range(n)]  # decreasing
  groups = min(max_shapes, n)
  # best[k][i]: least total queries of blocks i.. in at most k groups; cut[k][i]: where the
  # group starting at block i ends in that optimum.
  inf = float("inf")
  best = [[0.0 if i == n else inf for i in range(n + 1)] for _ in range(groups + 1)]
  cut = [[n] * (n + 1) for _ in range(groups + 1)]
  for k in range(1, groups + 1):
    for i in range(n - 1, -1, -1):
      for j in range(i + 1, n + 1):
        cost = (j - i) * remaining[i] + best[k - 1][j]
        if cost < best[k][i]:
          best[k][i], cut[k][i] = cost, j
  lengths, cached, shape_of = [], [], []
  i, k = 0, groups
  while i < n:
    j = cut[k][i]
    lengths.append(remaining[i])
    cached.append(gen_length - remaining[j - 1])
    shape_of.extend([len(lengths) - 1] * (j - i))
    i, k = j, k - 1
  return PrefixWindows(tuple(lengths), tuple(cached), tuple(shape_of))

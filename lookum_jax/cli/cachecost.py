"""The one-line warning when a KV cache is asked of a toy model known to lose accuracy under
it (measured and recorded in its `task.json` as `cache_cost`)."""

from __future__ import annotations

from typing import Any

# A loss of accuracy (absolute) under the cache that is worth a warning.
WORTH_WARNING = 0.05


def cache_warning(model_name: str, cache_cost: dict[str, Any] | None, cache: str,
                  cache_refresh: int) -> str | None:
  """The warning for decoding `model_name` with `cache` (refreshed every `cache_refresh`
  steps), or None when no loss is recorded for it."""
  if cache == "none" or cache_refresh == 1 or not cache_cost:
    return None
  accuracy = cache_cost.get("accuracy", {})
  uncached = accuracy.get("none")
  cached = accuracy.get(cache, accuracy.get("dual"))
  if uncached is None or cached is None or uncached - cached < WORTH_WARNING:
    return None
  refreshed = accuracy.get("dual, refresh 1")
  restored = f" ({refreshed:.3f})" if refreshed is not None else ""
  return (f"warning: {model_name} loses accuracy under a KV cache: {cache_cost['sampler']} "
          f"solves {uncached:.3f} of {cache_cost['problems']} problems uncached and "
          f"{cached:.3f} with --cache {cache if cache in accuracy else 'dual'} (its task.json); "
          f"--cache-refresh 1 refreshes the cache every step and restores it{restored}.")

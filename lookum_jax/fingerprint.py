"""Content fingerprints for cached results: a changed setting never reuses an old record."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
  """`value` as JSON with sorted keys and no whitespace (tuples as lists): equal values give
  equal text."""
  return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_fallback)


def fingerprint(value: Any, length: int = 16) -> str:
  """The first `length` hex digits of the SHA-256 of `canonical_json(value)`."""
  return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def _fallback(value: Any) -> Any:
  raise TypeError(f"cannot fingerprint {type(value).__name__} {value!r}: give its JSON form "
                  "(e.g. a config's to_dict()) instead.")

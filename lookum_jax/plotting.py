"""Accuracy-against-NFE plots, the field's standard picture: one line per sampler family."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from lookum_jax.evaluation import EvalResult

# What a family sweeps, by strategy: low_confidence at 1/2/4 tokens per step, the threshold
# tau sweep, EB's gamma, LookUM's K. Results that agree on everything else are one family.
# A strategy not listed sweeps nothing but its policy, so all its results are one family
# (the learned policy at several NFE penalties alpha, say).
SWEPT = {
    "low_confidence": ("steps",), "margin": ("steps",), "entropy": ("steps",),
    "random": ("steps",), "threshold": ("tau",), "entropy_bounded": ("gamma",),
    "lookum": ("paths", "steps"),
}
_NOT_COMPARED = ("steps",)  # top-level sampler fields that only move a point along its line
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


@dataclasses.dataclass(frozen=True)
class Family:
  """Results of one sampler family, in order of NFE, drawn as one line."""

  name: str
  members: tuple[int, ...]  # indices into the results


def strategy_and_params(sampler: dict[str, Any]) -> tuple[str, dict[str, Any]]:
  """(strategy name, its parameters) of a sampler summary, whether the parameters sit in
  `params` or the strategy is summarized as a dict with a `name`."""
  strategy, params = sampler.get("strategy", "?"), dict(sampler.get("params") or {})
  if isinstance(strategy, dict):
    params = {**{k: v for k, v in strategy.items() if k != "name"}, **params}
    strategy = strategy.get("name", "?")
  return str(strategy), params


def _fixed_settings(sampler: dict[str, Any]) -> dict[str, Any]:
  """The settings a family shares: the sampler minus the parameters its strategy sweeps."""
  strategy, params = strategy_and_params(sampler)
  swept = SWEPT.get(strategy, None)
  if swept is None:
    return {"strategy": strategy}
  fixed = {k: v for k, v in sampler.items() if k not in ("strategy", "params", *swept)}
  fixed["strategy"] = strategy
  fixed.update({f"params.{k}": v for k, v in params.items() if k not in swept})
  return fixed


def sampler_families(results: Sequence[EvalResult]) -> list[Family]:
  """Groups results into families (first-seen order), each sorted by mean NFE.

  Two families of one strategy (e.g. LookUM with two verifier scopes) are named by the
  settings that tell them apart.
  """
  groups: dict[str, list[int]] = {}
  settings: dict[str, dict[str, Any]] = {}
  for i, r in enumerate(results):
    fixed = _fixed_settings(r.sampler)
    key = json.dumps(fixed, sort_keys=True, default=str)
    groups.setdefault(key, []).append(i)
    settings[key] = fixed
  families = []
  for key, members in groups.items():
    strategy = settings[key]["strategy"]
    rivals = [settings[k] for k in groups if k != key and settings[k]["strategy"] == strategy]
    differing = sorted({name for other in rivals for name, value in settings[key].items()
                        if other.get(name) != value and name not in _NOT_COMPARED})
    name = strategy
    if differing:
      name += " " + ", ".join(f"{n.removeprefix('params.')}={settings[key][n]}"
                              for n in differing)
    families.append(Family(name, tuple(sorted(members, key=lambda i: results[i].mean_nfe))))
  return families


def family_styles(count: int) -> list[tuple[str, str]]:
  """(colour, marker) for `count` families: distinct colours up to 20 families, distinct
  markers up to 12, and no pair twice up to 60."""
  import matplotlib

  cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
  return [(matplotlib.colors.to_hex(cmap(i % cmap.N)), MARKERS[i % len(MARKERS)])
          for i in range(count)]


def _point_label(result: EvalResult) -> str:
  """A point's label on its line: the result's label without its strategy's name."""
  strategy, _ = strategy_and_params(result.sampler)
  return result.label.removeprefix(strategy + " ")


def plot_accuracy_vs_nfe(results: Sequence[EvalResult], path: str | os.PathLike,
                         title: str = "") -> list[Family]:
  """One line per sampler family through its points (95% interval as error bars), each
  point labelled with what sets it apart; written as PNG to `path`. Returns the families."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  families = sampler_families(results)
  fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
  for family, (colour, marker) in zip(families, family_styles(len(families)), strict=True):
    points = [results[i] for i in family.members]
    xs = [r.mean_nfe for r in points]
    ys = [r.accuracy for r in points]
    yerr = [[r.accuracy - r.ci95[0] for r in points], [r.ci95[1] - r.accuracy for r in points]]
    ax.errorbar(xs, ys, yerr=yerr, fmt=f"-{marker}", color=colour, capsize=3, markersize=6,
                linewidth=1.4, elinewidth=0.8, alpha=0.9, label=family.name)
    for r, x, y in zip(points, xs, ys, strict=True):
      ax.annotate(_point_label(r), (x, y), textcoords="offset points", xytext=(5, 4),
                  fontsize=6, color=colour)
  ax.set_xscale("log")
  plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
  ax.xaxis.set_major_formatter(plain)
  ax.xaxis.set_minor_formatter(plain)
  ax.tick_params(axis="x", which="minor", labelsize=7)
  ax.set_xlabel("mean NFE (forward passes per sequence, log scale)")
  ax.set_ylabel("accuracy")
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3, which="both")
  ax.set_title(title)
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="sampler family",
            title_fontsize=7)
  fig.tight_layout()
  fig.savefig(path, bbox_inches="tight")  # the legend sits outside the axes
  plt.close(fig)
  return families

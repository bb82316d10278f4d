"""Accuracy-against-NFE plots, the field's standard picture: one line per sampler family."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from lookum_jax.evaluation import EvalResult

# What a family sweeps, by strategy: low_confidence at 1/2/4 tokens per step, the threshold
# tau sweep, EB's gamma, LookUM's K, PC-Sampler's steps (one line per position decay), DUS's
# base, first stride and block (it takes about log2(block) steps per block, so its front runs
# over the block length). Results that agree on everything else are one family. A strategy
# not listed sweeps nothing but its policy, so all its results are one family (the learned
# policy at several NFE penalties alpha, say).
SWEPT = {
    "low_confidence": ("steps",), "margin": ("steps",), "entropy": ("steps",),
    "random": ("steps",), "threshold": ("tau",), "entropy_bounded": ("gamma",),
    "lookum": ("paths", "steps"),
    "pc_sampler": ("steps",), "dus": ("base", "skip", "block_length"),
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
    if fixed["strategy"] == "?":  # no sampler settings (a bench summary): a family alone
      fixed = {"strategy": r.label}
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


def display_names(families: Sequence[Family], results: Sequence[EvalResult]) -> list[str]:
  """Short legend names: a family's strategy, or for one of several families of one
  strategy, its label when it has one point (e.g. `lookum K=2 2/step paper`), else the
  words its points' labels share; the settings dump (`Family.name`) only as a last resort."""
  names = []
  for family in families:
    strategy, _ = strategy_and_params(results[family.members[0]].sampler)
    if family.name == strategy:
      names.append(strategy)
      continue
    labels = [results[i].label.split() for i in family.members]
    shared = []
    for words in zip(*labels, strict=False):
      if len(set(words)) > 1:
        break
      shared.append(words[0])
    name = " ".join(shared)
    names.append(name if name and name != strategy else family.name)
  if len(set(names)) < len(names):  # never two legend entries alike
    names = [n if names.count(n) == 1 else f.name for n, f in zip(names, families, strict=True)]
  return names


# Ticks of a log NFE axis: 1-2-3-4-6-8 per decade, read as plain numbers.
_NICE_TICKS = (1, 1.5, 2, 3, 4, 6, 8)


def _nfe_ticks(low: float, high: float) -> list[float]:
  ticks = [m * 10**e for e in range(-1, 6) for m in _NICE_TICKS]
  inside = [t for t in ticks if low * 0.9 <= t <= high * 1.1]
  while len(inside) > 8:  # thin to at most 8 labels
    inside = inside[::2]
  return inside or [low, high]


def _overlaps(box, boxes) -> bool:
  return any(box.overlaps(other) for other in boxes)


def plot_accuracy_vs_nfe(results: Sequence[EvalResult], path: str | os.PathLike,
                         title: str = "") -> list[Family]:
  """`draw_accuracy_vs_nfe`, written as PNG (200 dpi) to `path` and as PDF beside it.
  Returns the families."""
  from pathlib import Path

  import matplotlib.pyplot as plt

  fig, families = draw_accuracy_vs_nfe(results, title)
  png = Path(path)
  fig.savefig(png, dpi=200, bbox_inches="tight")
  fig.savefig(png.with_suffix(".pdf"), bbox_inches="tight")
  plt.close(fig)
  return families


def draw_accuracy_vs_nfe(results: Sequence[EvalResult], title: str = ""):
  """(figure, families): one line per sampler family through its points, with 95% Wilson
  intervals as error bars; the legend (short names) sits below the axes, and each point is
  labelled with what sets it apart on its line where that label overlaps no marker and no
  other label (a label that would is left out)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

  families = sampler_families(results)
  names = display_names(families, results)
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  points_by_family = []
  for family, name, (colour, marker) in zip(families, names, family_styles(len(families)),
                                            strict=True):
    points = [results[i] for i in family.members]
    xs = [r.mean_nfe for r in points]
    ys = [r.accuracy for r in points]
    yerr = [[r.accuracy - r.ci95[0] for r in points], [r.ci95[1] - r.accuracy for r in points]]
    ax.errorbar(xs, ys, yerr=yerr, fmt=f"-{marker}", color=colour, capsize=2.5,
                markersize=5.5, linewidth=1.5, elinewidth=0.9, label=name)
    points_by_family.append((points, xs, ys, colour, name))
  xs_all = [r.mean_nfe for r in results]
  ax.set_xscale("log")
  ax.xaxis.set_major_locator(FixedLocator(_nfe_ticks(min(xs_all), max(xs_all))))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.xaxis.set_minor_locator(NullLocator())
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.set_xlim(min(xs_all) / 1.15, max(xs_all) * 1.15)
  ax.tick_params(labelsize=9)
  ax.set_xlabel("mean NFE (forward passes per sequence, log scale)", fontsize=10)
  ax.set_ylabel("accuracy (bars: 95% Wilson interval)", fontsize=10)
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16),
            ncol=min(3, len(families)), frameon=False, handlelength=2.2, columnspacing=1.2)
  fig.tight_layout()
  # Point labels where they overlap no marker, no other label and stay inside the axes.
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  axes_box = ax.get_window_extent(renderer)
  taken = [matplotlib.transforms.Bbox.from_bounds(*ax.transData.transform((x, y)) - 6, 12, 12)
           for _, xs, ys, _, _ in points_by_family for x, y in zip(xs, ys, strict=True)]
  offsets = ((6, 5, "left"), (6, -13, "left"), (-6, 5, "right"), (-6, -13, "right"))
  for points, xs, ys, colour, name in points_by_family:
    if len(points) == 1 and name == points[0].label:
      continue  # the legend already says it
    for r, x, y in zip(points, xs, ys, strict=True):
      text = _point_label(r)
      if not text or text == name:
        continue
      for dx, dy, align in offsets:
        note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                           fontsize=7.5, color=colour, ha=align)
        box = note.get_window_extent(renderer)
        if not _overlaps(box, taken) and axes_box.contains(box.x0, box.y0) and \
            axes_box.contains(box.x1, box.y1):
          taken.append(box)
          break
        note.remove()
  return fig, families

"""Does LookUM's verifier separate erroneous commits from correct ones?

Runs LookUM on a toy model whose task has unique answers (Sudoku, arithmetic) and
records, at every branching step, each candidate path's verifier score and whether it
commits a token that differs from the reference answer. Reports the AUROC of the score
for "this path commits no wrong token" (0.5 = no signal), per verifier metric, the same
restricted to steps where the candidates disagree, and a histogram.

  python experiments/lookum_verifier.py --model toy-sudoku --limit 500 --paths 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.sampling import SamplerConfig, decode, pytree_dataclass
from lookum_jax.sampling.lookum import LookUM, keep_chosen
from lookum_jax.tasks import encode_text, left_pad_prompts
from lookum_jax.toylab import open_task_model


@pytree_dataclass
class LookUMProbe(LookUM):
  """LookUM that branches at every step and records, per row and per the row's own step,
  every candidate's verifier score and whether it commits a token that differs from the
  reference response (passed as `decode(..., targets=reference)`, `[B, G]`)."""

  name = "lookum_probe"

  def init_state(self, ctx, batch_size):
    steps = ctx.config.max_steps
    return {"score": jnp.zeros((batch_size, steps, self.paths), jnp.float32),
            "wrong": jnp.zeros((batch_size, steps, self.paths), bool),
            "valid": jnp.zeros((batch_size, steps), bool)}

  def step(self, ctx, state):
    reference = ctx.window_of(ctx.targets, state)  # [B, W]
    noise_keys, select_keys = ctx.step_keys(state)
    view = ctx.view(state, noise_keys)
    row_choice = self.proposal.rows_with_choice(self.base, view)
    # The keys of `LookUM.branch_step`: the same proposals LookUM would verify.
    propose_keys, choice_keys = jax.vmap(jax.random.split, out_axes=1)(select_keys)
    commits, tokens = jax.vmap(
        lambda v, k: self.proposal.propose(self.base, v, k, self.paths))(view, propose_keys)
    cand = self.verifier.verify(ctx, state, commits, tokens)
    wrong = jnp.any(cand.commits & (cand.tokens != reference[:, None]), axis=-1)  # [B, K]
    active = ctx.active(state)
    rows = jnp.arange(active.shape[0])
    record = state.strategy_state
    slot = jnp.where(active, state.num_steps, record["valid"].shape[1])  # inactive: dropped
    write = lambda buffer, x: buffer.at[rows, slot].set(x, mode="drop")
    record = {"score": write(record["score"], cand.score),
              "wrong": write(record["wrong"], wrong),
              "valid": write(record["valid"], active)}
    state = keep_chosen(ctx, state, cand, self.selector, choice_keys, row_choice, self.dedupe)
    return state.replace(strategy_state=record)


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
  """P(score of a random positive > score of a random negative), ties counting half."""
  if len(positive_scores) == 0 or len(negative_scores) == 0:
    return float("nan")
  scores = np.concatenate([positive_scores, negative_scores])
  ranks = np.empty(len(scores))
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  # Average ranks for ties.
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  avg = first + (counts - 1) / 2.0 + 1
  ranks[order] = np.repeat(avg, counts)
  n_pos, n_neg = len(positive_scores), len(negative_scores)
  return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--paths", type=int, default=4)
  parser.add_argument("--tokens-per-step", type=int, default=2)
  parser.add_argument("--pool-size", type=int, default=5)
  parser.add_argument("--verifiers", nargs="+", default=["neg_entropy", "confidence", "margin"])
  parser.add_argument("--scope", default="response", help="LookUM verifier_scope")
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="experiments/results/lookum_verifier")
  args = parser.parse_args()

  lab = open_task_model(args.model, limit=args.limit)
  gen, block = lab.spec.gen_length, lab.spec.block_length
  steps = max(gen // args.tokens_per_step, gen // block)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  model_config = lab.model.config
  graphdef, weights = nnx.split(lab.model)
  p_len = lab.task.prompt_length
  summary, histograms, t0 = [], {}, time.perf_counter()
  for verifier in args.verifiers:
    setting = LookUM.from_params(dict(
        paths=args.paths, pool_size=args.pool_size, verifier=verifier,
        verifier_scope=args.scope, selection="argmax"))
    probe = LookUMProbe(**{f.name: getattr(setting, f.name)
                           for f in dataclasses.fields(setting)})
    config = SamplerConfig(gen_length=gen, block_length=block, steps=steps, strategy=probe)

    @jax.jit
    def run(weights, ids, mask, reference, keys, config=config):
      model = nnx.merge(graphdef, weights)
      return decode(model, ids, mask, keys, config,
                    mask_token_id=model_config.mask_token_id,
                    eos_token_id=model_config.eos_token_id,
                    stop_token_ids=tuple(model_config.stop_token_ids),
                    targets=reference[:, p_len:])

    scores, wrong, disagree = [], [], []
    for first in range(0, len(lab.examples), args.batch_size):
      batch = lab.examples[first:first + args.batch_size]
      prompts = [encode_text(lab.tokenizer, lab.task.prompt_text(ex)) for ex in batch]
      ids, mask = left_pad_prompts(prompts, p_len, lab.tokenizer.pad_token_id)
      refs = []
      for ex in batch:
        r = encode_text(lab.tokenizer, lab.task.target_text(ex))
        refs.append(r + [lab.tokenizer.eos_token_id] * (gen - len(r)))
      reference = np.concatenate([ids, np.asarray(refs, np.int32)], axis=1)
      keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(args.seed), i))(
          jnp.arange(first, first + len(batch)))
      record = run(weights, ids, mask, reference, keys).strategy_state
      valid = np.asarray(record["valid"])
      s, w = np.asarray(record["score"])[valid], np.asarray(record["wrong"])[valid]
      scores.append(s.ravel())
      wrong.append(w.ravel())
      # Steps where some candidates are wrong and some are not: what selection can fix.
      mixed = w.any(axis=-1) & ~w.all(axis=-1)
      disagree.append((s[mixed], w[mixed]))
    scores, wrong = np.concatenate(scores), np.concatenate(wrong)
    ds = np.concatenate([d[0].ravel() for d in disagree])
    dw = np.concatenate([d[1].ravel() for d in disagree])
    # Within mixed steps, how often does argmax selection pick a correct path?
    picks = [(~w[np.arange(len(s)), s.argmax(-1)]).mean() for s, w in disagree if len(s)]
    chance = [(~w).mean() for s, w in disagree if len(s)]
    row = {
        "verifier": verifier, "candidates": int(len(scores)),
        "wrong_fraction": float(wrong.mean()),
        "auroc_all": auroc(scores[~wrong], scores[wrong]),
        "mixed_steps": int(sum(len(d[0]) for d in disagree)),
        "auroc_mixed_steps": auroc(ds[~dw], ds[dw]),
        "argmax_picks_correct_in_mixed": float(np.average(
            picks, weights=[len(d[0]) for d in disagree if len(d[0])])) if picks else None,
        "chance_correct_in_mixed": float(np.average(
            chance, weights=[len(d[0]) for d in disagree if len(d[0])])) if chance else None,
    }
    summary.append(row)
    histograms[verifier] = (scores[~wrong], scores[wrong])
    print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)

  meta = {"model": args.model, "task": lab.task.name, "n_problems": len(lab.examples),
          **{k: v for k, v in vars(args).items() if k not in ("out",)}}
  (out / "results.json").write_text(json.dumps({"meta": meta, "rows": summary}, indent=1))
  lines = ["| verifier | candidates | wrong | AUROC (all) | mixed steps | AUROC (mixed) | "
           "argmax correct (mixed) | chance (mixed) |", "|---|---|---|---|---|---|---|---|"]
  for r in summary:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    lines.append(f"| {r['verifier']} | {r['candidates']} | {r['wrong_fraction']:.3f} | "
                 f"{r['auroc_all']:.3f} | {r['mixed_steps']} | {r['auroc_mixed_steps']:.3f} | "
                 f"{fmt(r['argmax_picks_correct_in_mixed'])} | "
                 f"{fmt(r['chance_correct_in_mixed'])} |")
  (out / "results.md").write_text("\n".join(lines) + "\n")
  _plot(histograms, out / "verifier_hist.png")
  print(f"wrote {out}/")


def _plot(histograms, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(histograms), figsize=(4 * len(histograms), 3.2), dpi=120)
  for ax, (name, (good, bad)) in zip(np.atleast_1d(axes), histograms.items(), strict=True):
    bins = np.linspace(min(good.min(initial=0), bad.min(initial=0)),
                       max(good.max(initial=0), bad.max(initial=0)), 40)
    ax.hist(good, bins=bins, alpha=0.6, density=True, label="no wrong token")
    ax.hist(bad, bins=bins, alpha=0.6, density=True, label="commits a wrong token")
    ax.set_title(name)
    ax.set_xlabel("verifier score")
  np.atleast_1d(axes)[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


if __name__ == "__main__":
  main()

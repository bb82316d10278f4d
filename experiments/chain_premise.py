"""LookUM's premise, checked within each step: does the correct token leave less uncertainty?

LookUM keeps the candidate whose look-ahead state is most certain. That helps only if
committing a correct token leaves the model more certain about the rest of the answer than
committing a wrong one. This experiment holds everything else fixed: at every step of a
greedy decode (low_confidence, `--tokens-per-step` a step) it takes one of the positions the
base commits at that step (`--probe-rank`: the most certain, "first", the default; the second
most certain, "second"; or the least certain, "last"), writes there (a) the correct token and
(b) the model's best wrong token, runs the model on both look-ahead states (the step's other
commits are not written), and compares their entropy over each verifier scope. The unit is
the step: each step gives one paired comparison, and the reported rate is the fraction of
steps where the correct token leaves less entropy (0.5 = no signal; ties count half), i.e.
the within-step AUROC of the verifier score (negative entropy) over the step's one correct /
wrong pair, with a 95% bootstrap interval that resamples chains (a chain's steps are
correlated). The issue's goal on the long lab is >= 0.6. Steps at which a row commits fewer
than two tokens are left out for "second" and "last" (their count is printed and stored).

Scopes (as LookUM's `verifier_scope`; "masked" and "common" coincide here, since both
candidates commit the same position): "response" (every response position of the window),
"masked" (positions still masked after the commit), "committed" (the held position itself)
and "block" (the current block's positions).

Rows: every step; steps where the model's own token at the held position is wrong; steps
where the model is unsure there (confidence < 0.99); steps whose canvas still agrees with the
reference ("clean": after a committed error the reference token is no longer the right one
in context), and among them the steps where the model's own token is wrong, i.e. the first
error of the row, the step where a verifier could save the answer; and on
register chains the steps whose held position is a value (computed from the previous value,
not copied from the prompt).

  python experiments/chain_premise.py --model toy-chain --limit 500 --tokens-per-step 2
  python experiments/chain_premise.py --limit 500 --tokens-per-step 2 4 --probe-rank second \
      --block-length 32 --cache dual
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lookum_jax.sampling import SamplerConfig, Strategy, generate
from lookum_jax.sampling.scores import entropy
from lookum_jax.sampling.strategies.base import pytree_dataclass, static_field
from lookum_jax.sampling.strategies.rules import commit_top_k, rank_positions
from lookum_jax.tasks import left_pad_prompts
from lookum_jax.tasks.tokenizer import encode_example
from lookum_jax.toylab import open_task_model

SCOPES = ("response", "masked", "committed", "block")
RANKS = ("first", "second", "last")


@pytree_dataclass
class PremiseProbe(Strategy):
  """Greedy low_confidence that, before each step, probes the correct and the best wrong
  token at the position it would commit first, recording the look-ahead entropies per scope
  (`generate(..., targets=reference)`)."""

  name = "premise_probe"
  needs_logits = True  # probes the best wrong token from `view.logits`
  rank: str = static_field("first")  # which of the step's commits to hold: RANKS

  def __post_init__(self):
    if self.rank not in RANKS:
      raise ValueError(f"rank must be one of {RANKS}, got {self.rank!r}")

  def init_state(self, ctx, batch_size):
    steps = ctx.config.max_steps
    return {"entropy": jnp.zeros((batch_size, steps, 2, len(SCOPES)), jnp.float32),
            "model_right": jnp.zeros((batch_size, steps), bool),
            "confidence": jnp.zeros((batch_size, steps), jnp.float32),
            "position": jnp.zeros((batch_size, steps), jnp.int32),
            "clean": jnp.zeros((batch_size, steps), bool),
            "commits": jnp.zeros((batch_size, steps), jnp.int32),
            "fallback": jnp.zeros((batch_size, steps), bool),
            "valid": jnp.zeros((batch_size, steps), bool)}

  def step(self, ctx, state):
    targets = ctx.window_of(ctx.targets, state)  # [B, W]
    noise_keys, _ = ctx.step_keys(state)
    view = ctx.view(state, noise_keys)
    rows = jnp.arange(targets.shape[0])
    held, num_commits, fallback = held_position(view, self.rank)  # [B] each
    width = targets.shape[1]
    one_hot = jnp.arange(width)[None] == held[:, None]  # [B, W]
    correct = targets[rows, held]
    logits = view.logits[rows, held].at[rows, correct].set(-jnp.inf)
    logits = logits.at[:, ctx.mask_token_id].set(-jnp.inf)
    wrong = jnp.argmax(logits, axis=-1)
    commits = jnp.repeat(one_hot[:, None], 2, axis=1)  # [B, 2, W]
    tokens = jnp.broadcast_to(jnp.stack([correct, wrong], axis=1)[:, :, None], commits.shape)
    ent = entropy(ctx.lookahead(state, commits, tokens))  # [B, 2, W]
    remaining = (ctx.window_masked(state) & ~one_hot)[:, None]
    block = jnp.broadcast_to(ctx.in_block(state)[None, None], remaining.shape)
    masks = {"response": jnp.ones_like(remaining), "masked": remaining,
             "committed": one_hot[:, None], "block": block}
    mean = lambda m: jnp.sum(jnp.where(m, ent, 0.0), -1) / jnp.maximum(jnp.sum(m, -1), 1)
    probe = jnp.stack([mean(masks[s]) for s in SCOPES], axis=-1)  # [B, 2, S]
    # Every token committed so far agrees with the reference: the reference token is then
    # the right one in this context (after an error the model's consistent continuation of
    # its own mistake differs from the reference everywhere, and the comparison means nothing).
    response = state.tokens[:, ctx.prompt_length:]
    clean = jnp.all(state.masked | (response == ctx.targets), axis=-1)
    active = ctx.active(state)
    record = state.strategy_state
    slot = jnp.where(active, state.num_steps, record["valid"].shape[1])  # inactive: dropped
    write = lambda buffer, x: buffer.at[rows, slot].set(x, mode="drop")
    record = {"entropy": write(record["entropy"], probe),
              "model_right": write(record["model_right"], view.candidates[rows, held] == correct),
              "confidence": write(record["confidence"], view.confidence[rows, held]),
              "position": write(record["position"], view.positions[rows, held]),
              "clean": write(record["clean"], clean),
              "commits": write(record["commits"], num_commits),
              "fallback": write(record["fallback"], fallback),
              "valid": write(record["valid"], active)}
    state = ctx.select_step(state, lambda v, k: commit_top_k(v.certainty, v, v.num_transfer))
    return state.replace(strategy_state=record)


def held_position(view, rank: str) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The position `[B]` to hold among the ones the base commits this step, the number it
  commits `[B]`, and whether the row commits too few for `rank` `[B]`.

  The base (`commit_top_k(certainty, view, num_transfer)`) commits the eligible positions of
  rank 0 .. c - 1, c = min(num_transfer, eligible count). "first" holds rank 0 (the most
  certain; computed as before this option existed), "second" rank 1 and "last" rank c - 1.
  A row with c < 2 (one eligible position left, or a schedule step of one token) holds its
  only commit instead, flagged as a fallback for "second" and "last": that step says nothing
  about a less certain commit, and the tables leave it out."""
  eligible = view.eligible
  if rank == "first":
    held = jnp.argmax(jnp.where(eligible, view.certainty, -jnp.inf), axis=-1)
  ranks = jax.vmap(rank_positions)(view.certainty, eligible, view.demoted)  # [B, W]
  commits = jnp.minimum(jnp.broadcast_to(view.num_transfer, eligible.shape[:1]),
                        jnp.sum(eligible, axis=-1)).astype(jnp.int32)
  fallback = jnp.zeros_like(commits, bool) if rank == "first" else commits < 2
  if rank != "first":
    target = jnp.ones_like(commits) if rank == "second" else commits - 1
    target = jnp.where(fallback, 0, target)
    held = jnp.argmax(ranks == target[:, None], axis=-1)
  return held, commits, fallback


def premise_rates(entropy_pairs: np.ndarray, groups: dict[str, np.ndarray],
                  chains: np.ndarray, draws: int = 2000, seed: int = 0) -> list[dict]:
  """Per group of steps and scope: the within-step AUROC, the fraction of steps whose correct
  token leaves less entropy than the best wrong one (ties half: the AUROC of the verifier
  score, negative entropy, over the step's one correct / wrong pair), with a 95% percentile
  bootstrap interval that resamples chains (`chains [N]`, the chain of each step: a chain's
  steps are correlated), and the mean entropy difference."""
  rng = np.random.default_rng(seed)
  num_chains = int(chains.max()) + 1 if len(chains) else 0
  # Each draw: how many times each chain is drawn, [draws, chains].
  weight = np.stack([np.bincount(rng.integers(0, num_chains, num_chains), minlength=num_chains)
                     for _ in range(draws)]) if num_chains else np.zeros((draws, 0))
  rows = []
  for group, select in groups.items():
    pairs = entropy_pairs[select]  # [N, 2, S]
    count = np.bincount(chains[select], minlength=num_chains)  # steps per chain
    for s, scope in enumerate(SCOPES):
      right, wrong = pairs[:, 0, s], pairs[:, 1, s]
      win = (right < wrong) + 0.5 * (right == wrong)
      auroc, low, high = float("nan"), float("nan"), float("nan")
      if len(pairs):
        auroc = float(np.mean(win))
        wins = np.bincount(chains[select], weights=win, minlength=num_chains)
        total = weight @ count
        rates = (weight @ wins)[total > 0] / total[total > 0]
        low, high = (float(q) for q in np.quantile(rates, [0.025, 0.975]))
      rows.append({"steps": group, "scope": scope, "n": int(len(pairs)),
                   "chains": int(np.sum(count > 0)),
                   "correct_less_entropy": auroc, "auroc_ci": [low, high],
                   "mean_entropy_gap": float(np.mean(wrong - right)) if len(pairs) else None})
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="toy-chain")
  parser.add_argument("--limit", type=int, default=500)
  parser.add_argument("--tokens-per-step", type=int, nargs="+", default=[2])
  parser.add_argument("--block-length", type=int, nargs="+", default=None,
                      help="block lengths (default: the model's, i.e. full diffusion)")
  parser.add_argument("--cache", default="none", choices=("none", "prefix", "dual"))
  parser.add_argument("--batch-size", type=int, default=50)
  parser.add_argument("--probe-rank", default="first", choices=RANKS,
                      help="which of the step's commits to hold: the most certain (first), the "
                      "second most certain (second) or the least certain (last)")
  parser.add_argument("--out", default="experiments/results/chain/premise")
  args = parser.parse_args()
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)

  lab = open_task_model(args.model, limit=args.limit)
  gen, task, tok = lab.gen_length, lab.task, lab.tokenizer
  pairs = [encode_example(task, ex, tok, gen) for ex in lab.examples]
  prompts = [prompt for prompt, _ in pairs]
  references = np.stack([response for _, response in pairs])  # EOS-padded to gen
  results, t0 = [], time.perf_counter()
  for block in args.block_length or [lab.block_length]:
    for k in args.tokens_per_step:
      config = SamplerConfig(gen_length=gen, block_length=block, steps=gen // k,
                             cache=args.cache, strategy=PremiseProbe(rank=args.probe_rank))
      records = []
      for first in range(0, len(prompts), args.batch_size):
        index = np.arange(first, min(first + args.batch_size, len(prompts)))
        ids, mask = left_pad_prompts([prompts[i] for i in index], task.prompt_length,
                                     tok.pad_token_id)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.asarray(index))
        state = generate(lab.model, ids, config, keys, mask,
                         targets=references[index]).strategy_state
        records.append(jax.tree.map(np.asarray, state))
      rec = {name: np.concatenate([r[name] for r in records]) for name in records[0]}
      # Steps at which the row commits fewer than two tokens say nothing of a second or last
      # commit ("second"/"last" hold the only one there): left out of every group.
      fallback = rec["valid"] & rec["fallback"]
      valid = rec["valid"] & ~rec["fallback"]
      chains = np.nonzero(valid)[0]  # the chain of each kept step, for the bootstrap
      pairs = rec["entropy"][valid]
      right, conf = rec["model_right"][valid], rec["confidence"][valid]
      clean = rec["clean"][valid]
      groups = {"all": np.ones(len(pairs), bool), "model wrong": ~right,
                "confidence < 0.99": conf < 0.99, "clean canvas": clean,
                "clean canvas, model wrong (the first error)": clean & ~right}
      if task.name == "chain":  # the held position is a value (computed, not copied)
        position = rec["position"][valid]
        width = task.step_width
        values = (position % width == width - 1) & (position < width * task.num_steps)
        groups.update({"values": values, "values, model wrong": values & ~right})
      for row in premise_rates(pairs, groups, chains):
        row.update(block_length=block, tokens_per_step=k, cache=args.cache,
                   probe_rank=args.probe_rank, fallback_steps=int(fallback.sum()))
        results.append(row)
        print(json.dumps(row), flush=True)
      print(f"block {block}, {k}/step, rank {args.probe_rank}: {valid.sum()} steps "
            f"({fallback.sum()} fallback steps left out), model wrong at "
            f"{(~right).mean():.3f} of them ({time.perf_counter() - t0:.0f} s)", flush=True)
  meta = {"model": args.model, "task": task.name, "n_problems": len(prompts),
          "seconds": round(time.perf_counter() - t0, 1),
          "command": "python experiments/chain_premise.py " + " ".join(
              f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
              for k, v in vars(args).items() if v is not None and k != "out")}
  tag = f"_{args.cache}" if args.cache != "none" else ""
  tag += f"_{args.probe_rank}" if args.probe_rank != "first" else ""  # first: the old names
  (out / f"results{tag}.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1))
  lines = [f"Premise check, {args.model}, cache {args.cache}, probe rank {args.probe_rank}, "
           f"{len(prompts)} held-out problems (`{meta['command']}`, {meta['seconds']} s). "
           "Within-step AUROC: P(correct leaves less entropy), ties half, with a 95% bootstrap "
           "interval over chains.", "",
           "| block | tokens/step | steps | n | chains | scope | within-step AUROC | 95% CI | "
           "mean gap (nats) |", "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    gap = "-" if r["mean_entropy_gap"] is None else f"{r['mean_entropy_gap']:.4f}"
    ci = "-" if not r["n"] else "[{:.3f}, {:.3f}]".format(*r["auroc_ci"])
    auroc = "-" if not r["n"] else f"{r['correct_less_entropy']:.3f}"
    lines.append(f"| {r['block_length']} | {r['tokens_per_step']} | {r['steps']} | {r['n']} | "
                 f"{r['chains']} | {r['scope']} | {auroc} | {ci} | {gap} |")
  (out / f"results{tag}.md").write_text("\n".join(lines) + "\n")
  print(f"wrote {out}/")


if __name__ == "__main__":
  main()

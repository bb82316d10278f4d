"""PC-Sampler and DUS swept over their main parameter, beside the threshold front, on a toy
model's held-out problems (same problems, same keys for every sampler).

    python experiments/sweep_new_samplers.py --model toy-sudoku --limit 100 \
        --out experiments/results/new_samplers/toy-sudoku
    python experiments/sweep_new_samplers.py --model toy-chain --limit 100 --block-length 32 \
        --cache dual --small --out experiments/results/new_samplers/toy-chain

PC-Sampler: its position decay (lambda) at 1, 2 and 4 tokens per step, without a prior and
with the prior of the task's training answers (`experiments/token_prior.py`). DUS: its
dilation base and first stride (skip), in full diffusion and in blocks. Threshold: tau.
Writes `results.json` (one summary per sampler) and `results.md` (the table) under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from lookum_jax.evaluation import evaluate
from lookum_jax.sampling import SamplerConfig, Threshold
from lookum_jax.sampling.strategies.dus import DUS
from lookum_jax.sampling.strategies.pc_sampler import PCSampler, token_frequency_prior
from lookum_jax.tasks.corpus import answer_token_ids
from lookum_jax.toylab import open_task_model


def line_up(gen: int, block: int, prior, cache: str = "none",
            small: bool = False) -> list[tuple[str, SamplerConfig]]:
  """The samplers compared; `small`: threshold 0.9 and 0.97, PC-Sampler at 2 tokens a step
  (decay 0 and 0.25, with and without the prior) and DUS base 2 only."""
  base = SamplerConfig(gen_length=gen, block_length=block, steps=gen, cache=cache)
  blocks = gen // block
  rows = [(f"threshold tau={tau}", base.replace(strategy=Threshold(tau=tau)))
          for tau in ((0.9, 0.97) if small else (0.5, 0.7, 0.9, 0.95))]
  if small:
    steps = blocks * max(1, gen // 2 // blocks)
    for decay in (0.0, 0.25):
      for label, value in (("", None), (" prior", prior)):
        rows.append((f"pc_sampler decay={decay}{label} 2/step",
                     base.replace(steps=steps, strategy=PCSampler(decay=decay, prior=value))))
    return [*rows, ("dus base=2", base.replace(strategy=DUS(base=2)))]
  for per_step in (1, 2, 4):
    steps = blocks * max(1, gen // per_step // blocks)
    for decay in (0.0, 0.25, 1.0):
      rows.append((f"pc_sampler decay={decay} {per_step}/step",
                   base.replace(steps=steps, strategy=PCSampler(decay=decay))))
    rows.append((f"pc_sampler decay=0.25 prior {per_step}/step",
                 base.replace(steps=steps, strategy=PCSampler(decay=0.25, prior=prior))))
  for b, skip in ((2, 1), (2, 2), (3, 1), (4, 1)):
    rows.append((f"dus base={b} skip={skip}", base.replace(strategy=DUS(base=b, skip=skip))))
  for dus_block in (8, 4):
    if dus_block < block and gen % dus_block == 0:
      rows.append((f"dus base=2 block={dus_block}",
                   base.replace(block_length=dus_block, strategy=DUS(base=2))))
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="toy-sudoku")
  parser.add_argument("--limit", type=int, default=100)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--prior-examples", type=int, default=1000)
  parser.add_argument("--block-length", type=int, help="default: the model's")
  parser.add_argument("--cache", default="none", choices=("none", "prefix", "dual"))
  parser.add_argument("--small", action="store_true", help="the short line-up (line_up)")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  opened = open_task_model(args.model, limit=args.limit)
  answers = answer_token_ids(opened.task, opened.tokenizer, args.prior_examples,
                             opened.gen_length)
  prior = token_frequency_prior(answers, opened.model.config.vocab_size)
  os.makedirs(args.out, exist_ok=True)
  results = []
  table = ["| sampler | accuracy | 95% CI | mean NFE | wall s (compile s) |",
           "|---|---|---|---|---|"]
  block = args.block_length or opened.block_length
  for label, config in line_up(opened.gen_length, block, prior, args.cache, args.small):
    r = evaluate(opened.model, opened.tokenizer, opened.task, opened.examples, config,
                 jax.random.key(args.seed), batch_size=args.batch_size, label=label,
                 progress=False)
    results.append(r.summary())
    row = (f"| {label} | {r.accuracy:.3f} | {r.ci95[0]:.3f}-{r.ci95[1]:.3f} | "
           f"{r.mean_nfe:.2f} | {r.wall_time_s:.1f} ({r.compile_time_s:.1f}) |")
    table.append(row)
    print(row, flush=True)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=1, default=str)
  header = (f"{args.model}: first {len(opened.examples)} held-out problems, gen_length "
            f"{opened.gen_length}, block_length {block}, cache {args.cache}, temperature 0, "
            f"seed {args.seed}\n\n")
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(header + "\n".join(table) + "\n")


if __name__ == "__main__":
  main()

#!/usr/bin/env bash
# Seconds per GRPO step on toy-chain (configs/policy_chain.py: 8 prompts x (8 + 1 expert) rows,
# full diffusion, 128-token answers) before and after issue 22's changes, in one run: the
# trainer at BASE (default ccaff48: no cache, one no-gradient pass plus one program per update
# on the step-bucketed trajectory) and this tree without and with the prefix cache. The three
# run side by side (same machine load); each does 1 warm-up step then STEPS timed steps of the
# same prompts and keys. Results: experiments/results/chain/policy_speed/*.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-ccaff48}
STEPS=${STEPS:-2}
OUT=experiments/results/chain/policy_speed
PY=${PY:-python}
mkdir -p "$OUT" tmp
rm -rf tmp/speed_base && mkdir -p tmp/speed_base
git archive "$BASE" | tar -x -C tmp/speed_base
cp experiments/bench_policy_step.py tmp/speed_base/experiments/
# The config at BASE has no `cache` or `checkpoint_interval_s` field: the same run without them.
sed -e 's/ cache="prefix",//' -e 's/, checkpoint_interval_s=300.0//' configs/policy_chain.py \
  > tmp/speed_base/policy_chain_base.py
(cd tmp/speed_base && PYTHONPATH=$PWD $PY experiments/bench_policy_step.py \
  --config policy_chain_base.py --warmup 1 --steps "$STEPS" --label "before ($BASE, no cache)" \
  --out "../../$OUT/before.jsonl") > "$OUT/before.log" 2>&1 &
PYTHONPATH=$PWD $PY experiments/bench_policy_step.py --config configs/policy_chain.py \
  --override cache=none --warmup 1 --steps "$STEPS" --label "after, no cache" \
  --out "$OUT/after_none.jsonl" > "$OUT/after_none.log" 2>&1 &
PYTHONPATH=$PWD $PY experiments/bench_policy_step.py --config configs/policy_chain.py \
  --warmup 1 --steps "$STEPS" --label "after, prefix cache" \
  --out "$OUT/after_prefix.jsonl" > "$OUT/after_prefix.log" 2>&1 &
wait
grep -h SUMMARY "$OUT"/*.log

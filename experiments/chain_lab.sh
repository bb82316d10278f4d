#!/usr/bin/env bash
# The long lab (issue 12), end to end after training: package toy-chain, then the premise
# check and the sampler studies. Each study resumes from its per-setting JSON files when rerun.
# Results go under experiments/results/chain/. About 40 minutes on 2 idle CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${STEP:-}
python experiments/package_toy_model.py --run experiments/runs/toy-chain --name toy-chain \
    --config configs/chain.py --eval-limit 100 ${STEP:+--step $STEP}
# Premise: full diffusion (no cache) and semi-AR blocks of 32 with the dual cache.
python experiments/chain_premise.py --model toy-chain --limit 100 --tokens-per-step 2
python experiments/chain_premise.py --model toy-chain --limit 100 --tokens-per-step 2 \
    --block-length 32 --cache dual
# Semi-AR blocks of 32, dual cache: LookUM K = 2, 3 with its oracle and random controls, two
# verifier settings, the threshold and EB fronts.
python experiments/chain_study.py --model toy-chain --limit 200 --block-length 32 --cache dual \
    --tokens-per-step 2 --paths 2 3 \
    --lookum-variant "pool_size=5,verifier_scope=response" "verifier_scope=common,pool_size=3" \
    --seeds 0
# Variants are on top of the defaults (a pool of 3, the common scope). Other verifiers
# (importance sampling only: the controls do not read the
# verifier), and SMC with its greedy particle.
python experiments/chain_study.py --model toy-chain --limit 200 --block-length 32 --cache dual \
    --tokens-per-step 2 --paths 2 --selections is --lookum-variant "entropy_cost=1.0" \
    "verifier_scope=committed" "verifier=confidence,verifier_scope=committed" --taus --gammas \
    --seeds 0 --tag verifiers
python experiments/chain_study.py --model toy-chain --limit 200 --block-length 32 --cache dual \
    --tokens-per-step 2 --paths 2 --selections smc --taus --gammas --seeds 0 --tag smc
# Full diffusion, no cache: LookUM K = 2 and its controls against greedy.
python experiments/chain_study.py --model toy-chain --limit 200 --tokens-per-step 2 --paths 2 \
    --taus 0.9 --gammas --seeds 0
# The headline comparison at 500 problems x 3 seeds: the recommended LookUM K = 3 against
# greedy at 2 tokens a step and the threshold front.
python experiments/chain_study.py --model toy-chain --limit 500 --block-length 32 --cache dual \
    --tokens-per-step 2 --paths 3 --selections is \
    --lookum-variant "verifier_scope=common,pool_size=3" --taus 0.9 0.97 --gammas \
    --seeds 0 1 2 --out experiments/results/chain/study500

#!/usr/bin/env bash
# GRPO from a stage-2 checkpoint over 3 seeds, against that checkpoint, on two held-out sets:
# the whole chain behind the table "A start whose referring rows show no unasked object" in
# bench/results/grpo_seeds-2026-11-28.md (about 2 h 30 min on 2 CPU cores). The recipe is in
# configs/tiny/gain/ (docs/FINDINGS.md); this script makes its data and runs its stages.
#
#     bash bench/research/grpo_gain.sh [OUT]  # OUT defaults to runs/grpo_gain; SEEDS="0 1 2" by default
#
# Each step is skipped when its output is already there, so a stopped run continues where it stopped.
# The table is written to OUT/grpo/grpo_seeds.md (evaluation set, fresh set, both pooled, and the
# gain per clip with its 95 % interval).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-runs/grpo_gain}
A=.venv/bin/aurora-rl
step() { echo "=== $(date +%T) $*"; }

# the training set (with unseen-class objects no expression asks for), GRPO's prompts (without
# them), and a fresh evaluation set made as the training set is
[ -f "$R/data/metadata.csv" ] || $A data synth --out "$R/data" --videos 4000 --seed 0 --unseen-distractors 0.3
[ -f "$R/grpo_data/metadata.csv" ] || $A data synth --out "$R/grpo_data" --videos 2000 --seed 7
[ -f "$R/eval5/metadata.csv" ] || $A data synth --out "$R/eval5" --videos 4000 --seed 5 --unseen-distractors 0.3
[ -f "$R/tiny-sam/config.json" ] || { step "SAM"; $A sam pretrain --data "$R/data" --out "$R/tiny-sam"; }

# the recipe's files name runs/grpo_gain; another OUT moves every path with it
PATHS=(data.root="$R/data" run.output_dir="$R/runs" model.sam.path="$R/tiny-sam")
C=configs/tiny/gain
[ -d "$R/runs/tiny-direct/checkpoint" ] || { step "distillation teacher"
    $A train sft --config $C/direct.yaml "${PATHS[@]}"; }
[ -d "$R/runs/sft/checkpoint" ] || { step "stage 1"
    $A train sft --config $C/sft.yaml "${PATHS[@]}" teacher_path="$R/runs/tiny-direct/checkpoint"; }
[ -d "$R/runs/reflect/checkpoint" ] || { step "stage 2"
    $A train reflect --config $C/reflect.yaml "${PATHS[@]}" model.path="$R/runs/sft/checkpoint"; }

step "GRPO, seeds ${SEEDS:-0 1 2}"
# shellcheck disable=SC2086  # SEEDS is a list
PYTHONPATH=. .venv/bin/python bench/research/grpo_seeds.py --config $C/grpo.yaml --start "$R/runs/reflect/checkpoint" \
    --data "$R/data" --grpo-data "$R/grpo_data" --more-eval "$R/eval5" --out "$R/grpo" --steps 100 --prompts 16 \
    --seeds ${SEEDS:-0 1 2} --set mix.every_object_data="$R/data"
step done

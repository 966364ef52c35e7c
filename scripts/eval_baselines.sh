#!/usr/bin/env bash
# Init-Basic and Init-Refuse of a model on world-facts ID/OOD tests and MMLU validation
# (docs/evaluate.md). Usage:
#   bash scripts/eval_baselines.sh [RUN_DIR] [MMLU_FOLDER]
# RUN_DIR defaults to runs/baselines; MMLU_FOLDER (dev/val/test CSVs, the layout of
# `rait data convert`'s MMLU parser) is optional: without it the MMLU rows are skipped.
# MODEL (env) picks the model (default: the offline SmolLM2-135M-Instruct).
set -euo pipefail
RUN=${1:-runs/baselines}
MMLU=${2:-}
RAIT=${RAIT:-rait}
MODEL_ARGS=()
if [[ -n "${MODEL:-}" ]]; then MODEL_ARGS=(--model "$MODEL"); fi

"$RAIT" data world-facts --out "$RUN/data"
sets=("wf-id:world_facts:$RUN/data:id_test:id" "wf-ood:world_facts:$RUN/data:ood_test:ood")
if [[ -n "$MMLU" ]]; then sets+=("mmlu-val:mmlu:$MMLU:val:id"); fi
for entry in "${sets[@]}"; do
  IFS=: read -r name format path split role <<<"$entry"
  for method in init-basic init-refuse; do
    extra=()
    if [[ $method != init-basic ]]; then extra=(--baseline "$RUN/$name/init-basic"); fi
    "$RAIT" eval "${MODEL_ARGS[@]}" --method "$method" --data "$path" --format "$format" \
      --split "$split" --test-set "$name" --role "$role" --out "$RUN/$name/$method" "${extra[@]}"
  done
done
"$RAIT" table "$RUN" --out "$RUN/results.md" --title "Baselines"

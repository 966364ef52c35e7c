#!/usr/bin/env bash
# Every data-construction method on world facts with the offline default model
# (SmolLM2-135M-Instruct), on CPU: one shared probe, CRaFT's rehearsal, GRAIT's influence
# scores, then per method build -> train (LoRA, METHODS.md section 6 defaults) -> eval on the ID and OOD test sets.
# Each step is cached in RUN, so a rerun continues where it stopped.
#
#   bash scripts/train_methods.sh RUN [PROBE_N] [EVAL_N] [N_VAN] [N_IDK]
#
# PROBE_N: training questions probed (default 600); EVAL_N: questions drawn from each test set
# (default 300; "all" for the full sets); N_VAN/N_IDK: training set sizes (default 120/30;
# LoRA training runs at about 1 sample/s on a 2-core CPU). Results: RUN/results.md and .json.
set -euo pipefail
RUN=${1:?usage: train_methods.sh RUN [PROBE_N] [EVAL_N] [N_VAN] [N_IDK]}
PROBE_N=${2:-600}
EVAL_N=${3:-300}
N_VAN=${4:-120}
N_IDK=${5:-30}
METHODS=(van-tuning cor-rait rtuning-padding rtuning-replace rtuning-u corcer-rait craft-no-cer craft
  grait-no-o1 grait-no-o2 grait)
SAMPLE=()
[[ "$EVAL_N" != all ]] && SAMPLE=(--sample "$EVAL_N")

[[ -f "$RUN/data/manifest.json" ]] || rait data world-facts --out "$RUN/data"

# 1. one probe for every method (R-Tuning-U's entropy samples included)
rait probe --data "$RUN/data" --format world_facts --split train --sample "$PROBE_N" \
  --shots "$RUN/data" --shots-format world_facts --shots-split dev --rtuning-u \
  --out "$RUN/probe"

# 2. CRaFT's rehearsal. SmolLM2-135M is rarely certain at T = 1: the released thresholds
#    (µ >= 0.995 and σ >= 0.995) keep 3 of 600 questions, so they are lowered to 0.7.
rait rehearse --probe "$RUN/probe" --min-mu 0.7 --min-sigma 0.7 --out "$RUN/rehearse"

# 3. GRAIT's gradient influence, at a warm-up LoRA trained on the same rehearsal set. The
#    warm-up LoRA has rank 8: the features project D = 2.4M LoRA gradients instead of 19.5M
#    at rank 64, which a 2-core CPU projects (k = 8192) eight times faster.
rait influence --probe "$RUN/probe" --set warmup_min_mu=0.7 --set warmup_min_sigma=0.7 \
  --lora-r 8 --epochs 3 --out "$RUN/influence"

# 4. baselines on the base model
for test in id_test ood_test; do
  label=wf-${test%_test}
  rait eval --data "$RUN/data" --format world_facts --split "$test" "${SAMPLE[@]}" \
    --method init-basic --test-set "$label" --role "${test%_test}" --out "$RUN/eval/$label/init-basic"
  rait eval --data "$RUN/data" --format world_facts --split "$test" "${SAMPLE[@]}" \
    --method init-refuse --test-set "$label" --role "${test%_test}" \
    --baseline "$RUN/eval/$label/init-basic" --out "$RUN/eval/$label/init-refuse"
done

# 5. every method: build, train, evaluate
for method in "${METHODS[@]}"; do
  after=()
  [[ $method == craft || $method == craft-no-cer ]] && after=(--knowledge-after "$RUN/rehearse/knowledge_after.jsonl")
  [[ $method == grait* ]] && after=(--influence "$RUN/influence/scores/influence.jsonl")
  rait build --method "$method" --data "$RUN/data" --format world_facts --split train \
    --knowledge "$RUN/probe/knowledge.jsonl" "${after[@]}" --n-van "$N_VAN" --n-idk "$N_IDK" \
    --seed 0 --out "$RUN/build/$method.jsonl"
  rait train --data "$RUN/build/$method.jsonl" --out "$RUN/train/$method"
  confidence=answer
  [[ $method == rtuning-padding || $method == rtuning-u ]] && confidence=padding
  for test in id_test ood_test; do
    label=wf-${test%_test}
    rait eval --data "$RUN/data" --format world_facts --split "$test" "${SAMPLE[@]}" \
      --adapter "$RUN/train/$method/adapter" --method "$method" --confidence "$confidence" \
      --test-set "$label" --role "${test%_test}" --baseline "$RUN/eval/$label/init-basic" \
      --out "$RUN/eval/$label/$method"
  done
done

rait table "$RUN/eval" --title "World facts, SmolLM2-135M-Instruct (LoRA, CPU)" --out "$RUN/results.md"

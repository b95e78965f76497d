#!/usr/bin/env bash
# medscope in one page, on a CPU: data → ClinVideoSuite → evaluation → training → an answer with its evidence.
# Each line is one stage; every stage writes files the next one reads. OUT=... to choose the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDSCOPE=${MEDSCOPE:-.venv/bin/medscope}
OUT=${OUT:-runs/quickstart}

# 1. Data: procedure-like videos with phases, instruments and short events, plus their annotations.
for seed in 0 1 2 3; do "$MEDSCOPE" synth --out "$OUT/videos" --duration-seconds 300 --seed "$seed"; done

# 2. ClinVideoSuite: evidence-aligned questions, three filter levels, replayable tool-calling trajectories.
"$MEDSCOPE" suite build --source synthclin --annotations "$OUT/videos" --out "$OUT/suite"

# 3. Evaluation: the oracle policy (looks on purpose) against uniform sampling at the same frame budget.
"$MEDSCOPE" eval --samples "$OUT/suite/samples.jsonl" --backend oracle --out "$OUT/eval_oracle"

# 4. Training: tokenizer + tiny Qwen3-VL → SFT warm-up → SFT cold start → GA-GRPO (+ ablations) → eval.
"$MEDSCOPE" train all --preset tiny --out "$OUT/train"

# 5. Ask the trained model, and write the clinician's evidence report.
"$MEDSCOPE" ask "$OUT/videos/synthclin_s0_5m.mp4" "When does bleeding start?" \
    --backend hf --model "$OUT/train/grpo" --report "$OUT/report.html" --trace "$OUT/trace.jsonl"

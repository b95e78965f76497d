#!/usr/bin/env bash
# medscope in one page, on a CPU: data → ClinVideoSuite → evaluation → training → an answer with its evidence.
# Each line is one stage; every stage writes files the next one reads. OUT=... to choose the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDSCOPE=${MEDSCOPE:-.venv/bin/medscope}
OUT=${OUT:-runs/quickstart}

# 1. Data: procedure-like videos with phases, instruments and short events, plus their annotations
#    (seeds that `train all` never uses, so the built-in model has not seen them; made like its training videos).
for seed in 100 101 102 103; do
  "$MEDSCOPE" synth --out "$OUT/videos" --duration-seconds 180 --fps 2 --keyframe-seconds 0.5 \
      --events-per-10min 10 --seed "$seed"
done

# 2. ClinVideoSuite: evidence-aligned questions, three filter levels, replayable tool-calling trajectories
#    (the question templates the built-in model was trained on).
"$MEDSCOPE" suite build --source synthclin --annotations "$OUT/videos" --out "$OUT/suite" \
    --templates ground_label event_where phase_at

# 3. Evaluation: the built-in model (medscope-tiny), then the oracle policy (knows the truth), each against
#    uniform sampling at the same frame budget; then the model turn by turn against the teacher's trajectories
#    (at which step it loses the evidence).
"$MEDSCOPE" eval --samples "$OUT/suite/samples.jsonl" --max-new-tokens 160 --out "$OUT/eval_tiny"
"$MEDSCOPE" turns --trajectories "$OUT/suite/trajectories.jsonl" --max-new-tokens 160 --out "$OUT/turns_tiny"
"$MEDSCOPE" eval --samples "$OUT/suite/samples.jsonl" --backend oracle --out "$OUT/eval_oracle"

# 4. Training: tokenizer + tiny Qwen3-VL → pointer curriculum → SFT on the teacher's trajectories → GA-GRPO
#    (+ ablations), beside the fair uniform baseline → eval → the model folder with its card (what medscope
#    ships as medscope-tiny). One to two and a half hours on 2 cores, by CPU.
"$MEDSCOPE" train all --preset tiny --out "$OUT/train"

# 5. Ask the trained model, and write the clinician's evidence report.
"$MEDSCOPE" ask "$OUT/videos/synthclin_s100_3m.mp4" "When does smoke happen? Answer with the time window in seconds." \
    --model "$OUT/train/medscope-tiny" --report "$OUT/report.html" --trace "$OUT/trace.jsonl"

#!/usr/bin/env bash
# The seed's pipeline, end to end, on a fresh machine with no download:
#   train a Transformer teacher on the built-in sequence task -> distill a student
#   from it -> quantize the student to int8 (strata compress, measured before and
#   after) -> evaluate and sample each -> draw the compressed student.
# Every number below is printed by a strata command.  `make seed` runs it;
# STEPS=N shortens both trainings and EVAL_BATCHES=N the evaluations (the tests
# run it with STEPS=20 EVAL_BATCHES=2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
STRATA="${STRATA:-strata}"
OUT="${OUT:-out/seed}"
steps=()
[ -n "${STEPS:-}" ] && steps=(--steps "$STEPS" --eval-every "$STEPS")
evals=()
[ -n "${EVAL_BATCHES:-}" ] && evals=(--max-batches "$EVAL_BATCHES")
prompt="the quick brown fox jumps over"

echo "== 1. the teacher: $here/teacher.arch"
$STRATA summary "$here/teacher.arch"
$STRATA train "$here/teacher.arch" --out "$OUT/teacher" --overwrite -q "${steps[@]}"

echo "== 2. the student, distilled from the teacher: $here/student.arch"
$STRATA train "$here/student.arch" --teacher-weights "$OUT/teacher" --out "$OUT/student" --overwrite -q "${steps[@]}"

echo "== 3. quantized to int8: quality, bytes and speed before and after"
$STRATA compress "$OUT/student" --pass 'quantize(int8_dynamic)' -o "$OUT/student-int8" --overwrite --eval "${evals[@]}"

echo "== 4. each model on the validation split"
for m in teacher student student-int8; do
  printf '%-13s' "$m:"; $STRATA eval "$OUT/$m" "${evals[@]}"
done

echo "== 5. each model reverses: \"$prompt\""
for m in teacher student student-int8; do
  printf '%-13s' "$m:"; $STRATA generate "$OUT/$m" --prompt "$prompt" --temperature 0 --tokens 60
done

echo "== 6. the compressed student, drawn after its passes"
$STRATA diagram "$OUT/student-int8/model.arch" --level model --after-passes -o "$OUT/student-int8.md"
echo "wrote $OUT/student-int8.md"

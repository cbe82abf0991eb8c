#!/usr/bin/env bash
# GPU check and training-speed measurement for one GPU machine (target: one H200, ~11 min in all).
#
#   bash scripts/gpu_check.sh                                   # every section, in this order
#   SECTIONS="step split" bash scripts/gpu_check.sh             # only some (any order given)
#   TIMEOUT_SPLIT=300 SECTIONS=split bash scripts/gpu_check.sh  # a longer budget (the run resumes)
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu_check.sh              # tiny models on the toy dataset, on the CPU
#
# Sections and their default timeouts on the GPU (TIMEOUT_<SECTION> overrides one, in seconds):
#   env          15 s  nvidia-smi, torch/CUDA versions, nvcc, CPU                      -> environment.txt
#   build       120 s  python -m tp2detr.ops build (CPU + CUDA kernels; ~1-2 min before) -> build.log
#   data         25 s  the semi-synthetic THUMOS14 store (12 s on a 2-core CPU)          -> data.log
#   tests        40 s  the gpu-marked op tests + the CPU op tests + the loss-check tests + three training
#                      steps on CUDA fp32 against the CPU's losses (both backends)     -> tests.log
#   ops          25 s  scripts/bench_ops.py --device cuda (fallback vs compiled op, forward and
#                      backward: the CUDA backward's speedup)                          -> ops_gpu.json
#   step         90 s  scripts/bench_train.py: the paper-config training step (batch 16, bf16): compiled op
#                      (cuda) and fallback (pytorch) eager, then the compiled op under trainer.compile=
#                      reduce-overhead (CUDA graphs) and =true, with torch.profiler and host
#                      synchronisations per step; each variant is written when done  -> train_step_gpu.json
#   split        90 s  train.py, paper config, THUMOS14 50/50 split 0, 35 epochs, eval every epoch, bf16,
#                      compiled op, in a fixed run folder; stopped (checkpoint saved) after 65 s (the
#                      limit less 25 s, or SPLIT_BUDGET), so rerunning the section resumes it; reports
#                      what finished                                                     -> train_split.json
#   concurrency 175 s  N = 5 and 10 runs (splits 0..N-1) at once, 2 epochs each, stopped after 50 / 85 s;
#                      N = 1 is the split section's run; projects the ten-split sweep   -> train_concurrency.json
#   merge        15 s  step + split + concurrency -> train_gpu.json (for docs/bench/train_h200.json) and a
#                      markdown table beside the authors' figures                       -> train_gpu.md
#   inference    35 s  scripts/bench_inference.py --device cuda (bf16, both backends)    -> inference_gpu.json
#   total       630 s  (through merge 595 s). The device tool stops a command after 600 s: inference comes
#                      last, after merge, so it is what such a stop loses; rerun it with
#                      SECTIONS=inference if the session has time.
# A section that fails or times out is recorded in summary.txt and the script goes on; the exit status is 1
# when any section failed. Without $OUT, everything is written to ./gpu_check_out. With $OUT (the device
# tool's folder, which returns at most 8 files, none deeper than 2 folders) the sections write to
# $GPU_CHECK_WORK/report and, after every section, summary.txt, the six JSON records and
# gpu_check_report.tar.gz (every log, table and run's metrics) are copied into $OUT, so a command stopped
# at the tool's limit still returns what finished.
# Run folders, the op build and the compile caches go to $GPU_CHECK_WORK (default outputs/gpu_check/, an
# ignored folder the device tool keeps between calls on a warm machine), so a rerun reuses them.
# Packages: the GPU machine's image has torch, numpy, scipy, h5py, tensorboard and tqdm but not Hydra.
# `make gpu-wheels` writes hydra-core, omegaconf and their dependency as wheels to .whl/ (ignored); name
# .whl in the device call's carry and this script installs them into $GPU_CHECK_WORK/site when
# `import hydra` fails. One device call:  run(command="bash scripts/gpu_check.sh", carry=[".whl"]).
# See docs/performance.md, "GPU measurement script".
# Other knobs: PYTHON, TRAIN_COMPILE (trainer.compile of the split/concurrency runs: false (default), true,
# reduce-overhead),
# SPLIT_BUDGET (seconds the split run trains), CONC_N / CONC_BUDGETS / CONC_EPOCHS, STEP_ARGS, OPS_ARGS,
# INFERENCE_ARGS (replace those scripts' arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
export PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export DEVICE="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEVICE" = cpu ]; then WORK_DEFAULT="$PWD/outputs/gpu_check_cpu"; else WORK_DEFAULT="$PWD/outputs/gpu_check"; fi
export WORK="${GPU_CHECK_WORK:-$WORK_DEFAULT}"
mkdir -p "$WORK"
if [ -n "${OUT:-}" ]; then
  export OUT_DIR="$WORK/report" PUBLISH_DIR="$OUT"
else
  export OUT_DIR="$PWD/gpu_check_out" PUBLISH_DIR=""
fi
mkdir -p "$OUT_DIR"
export WHEELS="${GPU_CHECK_WHEELS:-.whl}"  # the carried wheels (make gpu-wheels)
# what publish copies into $OUT besides the tarball: 7 files + 1, the device tool's limit of 8
PUBLISHED="summary.txt ops_gpu.json train_step_gpu.json train_split.json train_concurrency.json train_gpu.json \
inference_gpu.json"
export TP2DETR_OPS_CACHE="${TP2DETR_OPS_CACHE:-$WORK/ops-cache}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$WORK/inductor-cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SUMMARY="$OUT_DIR/summary.txt"
export GRACE=12  # seconds a stopped run gets to save its checkpoint before SIGKILL

ALL="env build data tests ops step split concurrency merge inference"
if [ "$DEVICE" = cpu ]; then
  # Tiny mode (tests/helpers/tiny_config.py's model on the toy dataset, one thread): proves the sections run.
  export DATA_OVERRIDES="dataset=toy paths.feature_dir=$WORK/features"
  export TRAIN_OVERRIDES="experiment=paper_thumos14 $DATA_OVERRIDES split=50_50 trainer.device=cpu \
trainer.precision=fp32 model.attn_backend=pytorch trainer.compile=false trainer.progress=false \
model.dim_feedforward=32 model.encoder_layers=1 model.decoder_layers=2 model.num_queries=6 optim.batch_size=4 \
trainer.ar=false trainer.breakdown=false trainer.eval_batch_size=16 trainer.log_every=2"
  export STEP_ARGS="${STEP_ARGS:---device cpu --precisions fp32 --backends pytorch --compile off --eval-batches 4 \
--steps 2 --profile-steps 2 --profile dataset=toy paths.feature_dir=$WORK/features model.dim_feedforward=32 \
model.encoder_layers=1 model.decoder_layers=2 model.num_queries=6 optim.batch_size=4 trainer.num_threads=1}"
  export OPS_ARGS="${OPS_ARGS:---device cpu --threads 1 --repeats 3 --train-steps 0}"
  export INFERENCE_ARGS="${INFERENCE_ARGS:---device cpu --models thumos14 --precisions fp32 --backends pytorch \
--repeats 1 --no-test-set}"
  export CONC_N="${CONC_N:-1 2}" CONC_BUDGETS="${CONC_BUDGETS:-20 25}"
  export SPLIT_THREADS=1 CONC_THREADS=1  # trainer.num_threads of the runs
  declare -A DEFAULT_TIMEOUT=([env]=30 [build]=300 [data]=60 [tests]=600 [step]=120 [split]=50
                              [concurrency]=120 [merge]=30 [ops]=300 [inference]=300)
else
  export DATA_OVERRIDES="dataset=thumos14_synth"
  export TRAIN_OVERRIDES="experiment=paper_thumos14 $DATA_OVERRIDES split=50_50 trainer.device=cuda \
trainer.precision=bf16 model.attn_backend=cuda trainer.compile=${TRAIN_COMPILE:-false} trainer.progress=false"
  export STEP_ARGS="${STEP_ARGS:---device cuda --precisions bf16 --variants cuda:off pytorch:off cuda:reduce-overhead \
cuda:on --steps 20 --profile --profile-steps 3}"
  export OPS_ARGS="${OPS_ARGS:---device cuda --repeats 50 --train-steps 0 --profile}"
  export INFERENCE_ARGS="${INFERENCE_ARGS:---device cuda --precisions bf16 --backends pytorch cuda --repeats 20}"
  export CONC_N="${CONC_N:-5 10}" CONC_BUDGETS="${CONC_BUDGETS:-50 85}"
  export SPLIT_THREADS="" CONC_THREADS=""  # split: the config's (torch's default); concurrency: CPUs // N
  declare -A DEFAULT_TIMEOUT=([env]=15 [build]=120 [data]=25 [tests]=40 [step]=90 [split]=90 [concurrency]=175
                              [merge]=15 [ops]=25 [inference]=35)
fi
export CONC_EPOCHS="${CONC_EPOCHS:-2}"
SECTIONS="${SECTIONS:-$ALL}"

note() { echo "$*" | tee -a "$SUMMARY"; }
export -f note

publish() {  # the staging folder's records and a tarball of all of it into $OUT (atomic per file)
  [ -n "$PUBLISH_DIR" ] || return 0
  mkdir -p "$PUBLISH_DIR"
  local f
  for f in $PUBLISHED; do
    [ -f "$OUT_DIR/$f" ] && cp "$OUT_DIR/$f" "$PUBLISH_DIR/.$f.part" && mv "$PUBLISH_DIR/.$f.part" "$PUBLISH_DIR/$f"
  done
  tar -czf "$PUBLISH_DIR/.report.part" -C "$OUT_DIR" . && mv "$PUBLISH_DIR/.report.part" "$PUBLISH_DIR/gpu_check_report.tar.gz"
}

ensure_packages() {  # Hydra for the image's python: installed from carried wheels when it is missing
  "$PY" -c "import hydra, omegaconf" 2>/dev/null && return 0
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:$WORK/site" && "$PY" -c "import hydra, omegaconf" && return 0
  fi
  note "== packages: $PY cannot import hydra/omegaconf and $WHEELS/ holds no usable wheels (run 'make gpu-wheels' \
here and name .whl in the device call's carry); the sections that compose a config will fail"
  return 1
}

sec_env() {
  { echo "date: $(date -u +%FT%TZ)  mode: $DEVICE"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
    "$PY" -c "import platform, torch; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    nvcc --version 2>/dev/null | tail -1 || echo "nvcc: not available"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
  } 2>&1 | tee "$OUT_DIR/environment.txt"
  [ "$DEVICE" = cpu ] || "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
}

sec_build() {
  "$PY" -m tp2detr.ops build > "$OUT_DIR/build.log" 2>&1; local rc=$?
  tail -$([ $rc = 0 ] && echo 1 || echo 40) "$OUT_DIR/build.log" | tee -a "$SUMMARY"
  return $rc
}

sec_data() {
  # shellcheck disable=SC2086
  "$PY" scripts/make_synthetic.py $DATA_OVERRIDES > "$OUT_DIR/data.log" 2>&1; local rc=$?
  tail -1 "$OUT_DIR/data.log" | tee -a "$SUMMARY"
  return $rc
}

sec_tests() {
  "$PY" -m pytest -q -p no:cacheprovider -m "gpu or not slow" tests/ops/test_ops_gpu.py tests/ops/test_ops.py \
    tests/engine/test_loss_check.py tests/engine/test_trainer_gpu.py \
    > "$OUT_DIR/tests.log" 2>&1; local rc=$?
  tail -3 "$OUT_DIR/tests.log" | tee -a "$SUMMARY"
  return $rc
}

sec_step() {
  # shellcheck disable=SC2086
  "$PY" scripts/bench_train.py $STEP_ARGS --out "$OUT_DIR/train_step_gpu.json" > "$OUT_DIR/step.log" 2>&1; local rc=$?
  grep -v '^USDT' "$OUT_DIR/step.log" | tail -14 | tee -a "$SUMMARY"
  return $rc
}

_copy_run() {  # the small files of a run folder into $OUT (the checkpoints stay in $WORK)
  mkdir -p "$2"
  for f in metrics.json train.log config.yaml stdout.log gpu_check_launches.json; do
    [ -f "$1/$f" ] && cp "$1/$f" "$2/"
  done
  return 0
}
export -f _copy_run

sec_split() {
  # shellcheck disable=SC2086
  # the run's own budget: the section's limit less the grace and ~13 s for start and report (GPU: 65 s)
  local budget="${SPLIT_BUDGET:-$((SECTION_LIMIT - GRACE - 13))}"
  "$PY" scripts/bench_gpu_train.py split --work-dir "$WORK" --budget-s "$budget" --grace-s "$GRACE" \
    ${SPLIT_THREADS:+--threads $SPLIT_THREADS} --out "$OUT_DIR/train_split.json" -- $TRAIN_OVERRIDES > "$OUT_DIR/split.log" 2>&1; local rc=$?
  _copy_run "$WORK/split" "$OUT_DIR/split_run"
  tail -4 "$OUT_DIR/split.log" | tee -a "$SUMMARY"
  return $rc
}

sec_concurrency() {
  local single=()
  [ -f "$OUT_DIR/train_split.json" ] && single=(--single-run "$OUT_DIR/train_split.json")
  # shellcheck disable=SC2086
  "$PY" scripts/bench_gpu_train.py concurrency --work-dir "$WORK" --n $CONC_N --budgets-s $CONC_BUDGETS \
    --epochs "$CONC_EPOCHS" --grace-s "$GRACE" ${CONC_THREADS:+--threads $CONC_THREADS} "${single[@]}" \
    --out "$OUT_DIR/train_concurrency.json" -- $TRAIN_OVERRIDES > "$OUT_DIR/concurrency.log" 2>&1; local rc=$?
  for n in $CONC_N; do
    for run in "$WORK/concurrency/n$n"/split*/; do
      [ -d "$run" ] && _copy_run "$run" "$OUT_DIR/concurrency/n$n/$(basename "$run")"
    done
  done
  tail -8 "$OUT_DIR/concurrency.log" | tee -a "$SUMMARY"
  return $rc
}

sec_merge() {
  "$PY" scripts/bench_gpu_train.py merge --step "$OUT_DIR/train_step_gpu.json" --split "$OUT_DIR/train_split.json" \
    --concurrency "$OUT_DIR/train_concurrency.json" --environment "$OUT_DIR/environment.txt" \
    --out "$OUT_DIR/train_gpu.json" > "$OUT_DIR/train_gpu.md" 2> "$OUT_DIR/merge.log"; local rc=$?
  cat "$OUT_DIR/train_gpu.md" "$OUT_DIR/merge.log" | tee -a "$SUMMARY"
  return $rc
}

sec_ops() {
  # shellcheck disable=SC2086
  "$PY" scripts/bench_ops.py $OPS_ARGS --out "$OUT_DIR/ops_gpu.json" > "$OUT_DIR/bench.log" 2>&1; local rc=$?
  tail -20 "$OUT_DIR/bench.log" | tee -a "$SUMMARY"
  return $rc
}

sec_inference() {
  # shellcheck disable=SC2086
  "$PY" scripts/bench_inference.py $INFERENCE_ARGS --out "$OUT_DIR/inference_gpu.json" > "$OUT_DIR/inference.log" 2>&1
  local rc=$?
  tail -12 "$OUT_DIR/inference.log" | tee -a "$SUMMARY"
  return $rc
}
export -f sec_env sec_build sec_data sec_tests sec_step sec_split sec_concurrency sec_merge sec_ops sec_inference

failed=""
note "== gpu_check ($DEVICE mode) $(date -u +%FT%TZ): sections: $SECTIONS"
ensure_packages || failed=" packages"
for section in $SECTIONS; do
  if [[ " $ALL " != *" $section "* ]]; then
    note "== $section: unknown section (expected some of: $ALL)"; failed="$failed $section"; continue
  fi
  var="TIMEOUT_${section^^}"
  limit="${!var:-${DEFAULT_TIMEOUT[$section]}}"
  export SECTION_LIMIT="$limit"
  note "== $section (timeout ${limit} s, $(date +%T))"
  started=$(date +%s)
  # timeout puts the section in its own process group and SIGTERMs the whole group at the limit: the
  # training runs save a checkpoint, bench_gpu_train.py reports what finished, and the section's bash
  # (trapping TERM) goes on to copy its outputs; SIGKILL 10 s later. Leftovers of the group are killed.
  timeout -k 10 "$limit" bash -c "trap ':' TERM; sec_$section" &
  group=$!
  wait "$group"
  rc=$?
  kill -KILL -- "-$group" 2>/dev/null
  elapsed=$(( $(date +%s) - started ))
  if [ $rc -eq 0 ]; then
    note "-- $section: ok (${elapsed} s)"
  else
    reason="exit status $rc"; { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && reason="timed out after ${limit} s"
    note "-- $section: FAILED, $reason (${elapsed} s)"
    failed="$failed $section"
  fi
  publish
done
if [ -n "$failed" ]; then note "== done: failed:$failed"; else note "== done: every section passed"; fi
publish
[ -z "$failed" ]

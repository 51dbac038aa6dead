#!/usr/bin/env bash
# The broker benchmarks and the GPU checks on a machine without Java or network, from the
# bundle benchmarks/offline/bundle.sh packs into .dev/ (a Java runtime, the broker's jars,
# wheels, the digits models): starts a broker, runs the GPU path's tests and the digits
# cascades through Kafka (tests/test_examples.py), then gpu.py, ensemble.py (with
# `ensemble vote x3`), batching.py and joiner.py, each output in a file of $OUT
# (default benchmarks/out/offline). STAGES picks and orders them (a stage may repeat):
#   bash benchmarks/offline/run.sh     # PY=python3.12 QUICK=1 PORT=9092 T=/tmp/sc
#   STAGES="ensemble ensemble joiner" bash benchmarks/offline/run.sh
#   STAGES=ensemble ROUNDS=3 VARIANTS="ensemble vote x3,co-located" bash benchmarks/offline/run.sh
set -u
OUT=${OUT:-$PWD/benchmarks/out/offline}
export PYTHONUNBUFFERED=1
R=$PWD
PY=${PY:-python3}
PORT=${PORT:-9092}
T=${T:-/tmp/sc}
QUICK=${QUICK:-}
mkdir -p "$T" "$OUT"
start=$SECONDS
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$OUT/progress.txt"; }

log setup
[ -d "$T/jre17n" ] || tar xJf .dev/jre.tar.xz -C "$T"
[ -d "$T/kafka" ] || tar xJf .dev/kafka.tar.xz -C "$T"
[ -n "${SKIP_PIP:-}" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target "$T/site" .dev/whl/*.whl
export PATH=$T/jre17n/bin:$PATH KAFKA_HOME=$T/kafka PYTHONPATH=$T/site:$R STREAMCOMPOSE_HOME=$T/home
export STREAMCOMPOSE_BOOTSTRAP=127.0.0.1:$PORT
mkdir -p topologies/models && cp -n .dev/models/* topologies/models/
{ nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Socket"; free -g; nvidia-smi
  $PY -c "import sys, torch, onnxruntime, numpy, aiokafka; print(sys.version, torch.__version__,
onnxruntime.__version__, numpy.__version__, aiokafka.__version__, torch.cuda.is_available())"
  java -version; uptime; } > "$OUT/machine.txt" 2>&1

log broker
$PY -m streamcompose.cli broker start --port "$PORT" --data-dir "$T/broker" --fresh \
  >> "$OUT/progress.txt" 2>&1 || { log "broker did not start"; exit 1; }
bpid=$(pgrep -f "kafka.Kafka.*$T/broker" | head -1)

tests() {
  log "tests: the GPU path and the digits cascades through Kafka"
  timeout 150 $PY -m pytest -q -p no:cacheprovider -rfE tests/test_gpu_path.py \
    tests/test_runtimes.py "tests/test_examples.py::test_digits_cascade_through_kafka" \
    "tests/test_examples.py::test_digits_cluster_runs_its_cnn_on_the_gpu_or_falls_back" \
    "tests/test_join.py::test_a_joiner_behind_its_branches_waits_for_what_it_has_not_read" \
    > "$OUT/tests.txt" 2>&1; log "tests exit $?"
}
gpu() {
  log gpu.py
  timeout 120 $PY benchmarks/gpu.py --device ${GPU_DEVICE:-cuda} --seconds 1.0 \
    > "$OUT/gpu.txt" 2>&1; log "gpu.py exit $?"
}
ensemble() {  # $1: the run's number, in the output's name
  log "ensemble.py $1"
  local variants
  IFS=, read -ra variants <<< "${VARIANTS:-ensemble,ensemble vote x3,co-located,co-located x2}"
  timeout $((60 + 180 * ${ROUNDS:-1})) $PY benchmarks/ensemble.py \
    --bootstrap "$STREAMCOMPOSE_BOOTSTRAP" ${bpid:+--broker-pid $bpid} \
    ${QUICK:+--records 3000 --latency-records 50} --rounds "${ROUNDS:-1}" \
    --variants "${variants[@]}" \
    > "$OUT/ensemble$1.txt" 2>&1; log "ensemble.py exit $?"
}
batching() {
  log batching.py
  timeout 120 $PY benchmarks/batching.py --bootstrap "$STREAMCOMPOSE_BOOTSTRAP" --adaptive \
    ${QUICK:+--records 2000 --rounds 1} > "$OUT/batching.txt" 2>&1
  log "batching.py exit $?"
}
joiner() {
  log joiner.py
  timeout 90 $PY benchmarks/joiner.py --bootstrap "$STREAMCOMPOSE_BOOTSTRAP" \
    > "$OUT/joiner.txt" 2>&1; log "joiner.py exit $?"
}
n=0
for stage in ${STAGES:-tests gpu ensemble batching joiner}; do
  n=$((n + 1))
  case $stage in
    ensemble) ensemble "$n" ;;
    tests|gpu|batching|joiner) $stage ;;
    *) log "no stage $stage" ;;
  esac
done

$PY -m streamcompose.cli broker stop --data-dir "$T/broker" >> "$OUT/progress.txt" 2>&1
uptime >> "$OUT/machine.txt"
log done

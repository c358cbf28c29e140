#!/usr/bin/env bash
# Edit propagation on one instance vs across instances (issue 4), under the load of
# scenario ii (20 rooms x 5 clients x 5 edits/s) spread over two instances that share
# one Redis and one Postgres:
#   bench/cluster.sh            -> JSON: loadgen summary + probe latencies
# Everything on 127.0.0.1; needs ../shared/bench (copied to $BENCH_DIR, npm ci there).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
BENCH_DIR="${BENCH_DIR:-${TMPDIR:-/tmp}/collab-bench}"
OUT="${OUT:-$ROOT/bench/results/cluster-$(date -u +%Y%m%dT%H%M%S)}"
PG_ADMIN="${COLLAB_TEST_PG:-postgresql://postgres@127.0.0.1:5432/postgres}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PY="$ROOT/.venv/bin/python"
mkdir -p "$OUT"
if [ ! -d "$BENCH_DIR/node_modules" ]; then
  rm -rf "$BENCH_DIR"; cp -r "$SHARED" "$BENCH_DIR"
  (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
SECRET="bench-secret-$(date +%s)-0123456789abcdef"
DB="collab_cluster_$$"; PREFIX="bench-cluster-$$"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  redis-cli --scan --pattern "$PREFIX*" | xargs -r redis-cli del >/dev/null
}
trap cleanup EXIT
URLS=()
for i in 0 1; do
  port=$((18200 + i))
  env COLLAB_DATA_DIR="$OUT/data$i" COLLAB_JWT_SECRET="$SECRET" COLLAB_PORT=$port \
      COLLAB_LOG_LEVEL=WARNING COLLAB_MESSAGES_PER_SECOND=100000 \
      COLLAB_MAX_CONNECTIONS_PER_USER=100000 COLLAB_DATABASE_URL="${PG_ADMIN%/*}/$DB" \
      COLLAB_REDIS_URL="$REDIS" COLLAB_REDIS_PREFIX="$PREFIX" \
      "$PY" -m collab serve >"$OUT/server$i.log" 2>&1 &
  PIDS+=("$!"); URLS+=("http://127.0.0.1:$port")
done
for u in "${URLS[@]}"; do
  for _ in $(seq 1 200); do curl -fs "$u/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done
TOK="$(env COLLAB_JWT_SECRET="$SECRET" "$PY" -m collab token --sub bench --ttl 7200)"
NAMES="$("$PY" "$ROOT/bench/projects.py" --url "${URLS[0]}" --token "$TOK" --count 20)"
if [ -n "${NO_LOAD:-}" ]; then  # NO_LOAD=1: the probes alone, on an idle cluster
  "$PY" "$ROOT/bench/propagation.py" --same "${URLS[0]}" --cross "${URLS[0]},${URLS[1]}" \
      --token "$TOK" --rate 5 --seconds 20 | tee "$OUT/propagation-idle.json"
  exit 0
fi
(cd "$BENCH_DIR" && node loadgen.mjs --server-kind socketio-yjs --url "${URLS[0]},${URLS[1]}" \
    --token "$TOK" --room-names "$NAMES" --server-pids "${PIDS[0]},${PIDS[1]}" \
    --rooms 20 --clients-per-room 5 --edits-per-sec 5 --duration 40 --warmup 3 --procs 2 \
    --label collab-2x/ii --out "$OUT/results.jsonl" >/dev/null 2>"$OUT/loadgen.log") &
LOADGEN=$!
sleep 8   # clients connected and seeded, steady edits under way
"$PY" "$ROOT/bench/propagation.py" --same "${URLS[0]}" --cross "${URLS[0]},${URLS[1]}" \
    --token "$TOK" --rate 5 --seconds 25 | tee "$OUT/propagation.json"
wait "$LOADGEN"
(cd "$BENCH_DIR" && node summarize.mjs "$OUT/results.jsonl")
echo "raw results: $OUT" >&2

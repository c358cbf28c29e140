#!/usr/bin/env bash
# Side-by-side benchmark: our server vs the anchors, same loadgen, same machine.
#   bench/compare.sh                      scenarios i and ii, collab (SQLite) vs Hocuspocus
#   SCENARIOS="i ii" SERVERS="collab collab-pg hocuspocus ysocketio" bench/compare.sh
#   SCENARIOS=ii SERVERS="collab-redis1 collab-redis5" bench/compare.sh   # cross-instance
#   PROFILE=1 SCENARIOS=ii SERVERS=collab bench/compare.sh   # + a py-spy flame graph per
#                                         collab run (scripts/setup "[bench]" installs it)
# Servers: collab (SQLite, in-process broker), collab-pg (Postgres), collab-redisN (N
# instances on Redis + Postgres), hocuspocus, ysocketio (the Node anchors).
# Needs ../shared/bench (copied to $BENCH_DIR and `npm ci`-ed there). Results: JSON lines
# in $OUT/results.jsonl and Markdown tables on stdout. Everything runs on 127.0.0.1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
BENCH_DIR="${BENCH_DIR:-${TMPDIR:-/tmp}/collab-bench}"
OUT="${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%S)}"
SCENARIOS="${SCENARIOS:-i ii}"
SERVERS="${SERVERS:-collab hocuspocus}"
PG_ADMIN="${COLLAB_TEST_PG:-postgresql://postgres@127.0.0.1:5432/postgres}"
mkdir -p "$OUT"
if [ ! -d "$BENCH_DIR/node_modules" ]; then
  rm -rf "$BENCH_DIR"; cp -r "$SHARED" "$BENCH_DIR"
  (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
PY="$ROOT/.venv/bin/python"
SECRET="bench-secret-$(date +%s)-0123456789abcdef"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

scenario_args() {
  case "$1" in
    i) echo "--rooms 1 --clients-per-room 2 --edits-per-sec 20 --duration 20 --warmup 2" ;;
    ii) echo "--rooms 20 --clients-per-room 5 --edits-per-sec 5 --duration 30 --warmup 2 --procs 2" ;;
    iii) echo "--rooms 100 --clients-per-room 10 --edits-per-sec 1 --duration 30 --warmup 3" ;;
    iiib) echo "--rooms 100 --clients-per-room 10 --edits-per-sec 0.1 --duration 30 --warmup 3 --procs 2" ;;
    iv) echo "--rooms 1 --clients-per-room 10 --ramp 5,10,20,30,40,50,60,70,80,100,120,150,200 --duration 10 --warmup 2 --ramp-retries 1" ;;
    v) echo "--rooms 20 --clients-per-room 5 --edits-per-sec 5 --awareness-per-sec 10 --duration 30 --warmup 2 --procs 2" ;;  # ii + a presence storm
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
rooms_of() { scenario_args "$1" | sed -E 's/.*--rooms ([0-9]+).*/\1/'; }

wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

run_collab() { # $1 = label, $2 = scenario, extra env in COLLAB_ENV
  local label="$1" sc="$2" port=18000 dir
  dir="$(mktemp -d)"
  local dburl=""
  if [ "$label" = "collab-pg" ]; then
    local db="collab_bench_$$_$RANDOM"
    psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
    dburl="${PG_ADMIN%/*}/$db"
  fi
  env COLLAB_DATA_DIR="$dir" COLLAB_JWT_SECRET="$SECRET" COLLAB_PORT=$port COLLAB_LOG_LEVEL=WARNING \
      COLLAB_MESSAGES_PER_SECOND=100000 COLLAB_MAX_CONNECTIONS_PER_USER=100000 ${dburl:+COLLAB_DATABASE_URL=$dburl} \
      "$PY" -m collab serve >"$OUT/$label-$sc.server.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/healthz"
  local tok names spy=""
  tok="$(env COLLAB_JWT_SECRET="$SECRET" COLLAB_DATA_DIR="$dir" "$PY" -m collab token --sub bench --ttl 7200)"
  names="$("$PY" "$ROOT/bench/projects.py" --url "http://127.0.0.1:$port" --token "$tok" --count "$(rooms_of "$sc")")"
  if [ -n "${PROFILE:-}" ]; then  # PROFILE=1: sample the server (scripts/setup "[bench]")
    "$ROOT/.venv/bin/py-spy" record --pid "$pid" --rate 200 --nonblocking --format "${PROFILE_FORMAT:-flamegraph}" \
        -o "$OUT/$label-$sc.profile.${PROFILE_EXT:-svg}" >/dev/null 2>&1 &
    spy=$!
  fi
  # shellcheck disable=SC2046
  (cd "$BENCH_DIR" && node loadgen.mjs --server-kind socketio-yjs --url "http://127.0.0.1:$port" \
      --token "$tok" --room-names "$names" --server-pids "$pid" --label "$label/$sc" \
      $(scenario_args "$sc") --out "$OUT/results.jsonl" >/dev/null 2>"$OUT/$label-$sc.loadgen.log")
  if [ -n "$spy" ]; then kill -INT "$spy" 2>/dev/null || true; wait "$spy" 2>/dev/null || true; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  if [ -n "$dburl" ]; then psql "$PG_ADMIN" -qc "DROP DATABASE ${dburl##*/} WITH (FORCE)" >/dev/null; fi
}

run_cluster() { # $1 = label (collab-redisN: N instances, Redis + Postgres), $2 = scenario
  # Clients are spread round-robin over the instances; with N = clients per room (5
  # in scenario ii) every client of a room is on a different instance, so every
  # measured (edit, receiver) pair crosses instances. N = 1 is the same set-up with
  # every pair on one instance.
  local label="$1" sc="$2" n="${1#collab-redis}" dir db urls="" pids=""
  dir="$(mktemp -d)"; db="collab_bench_$$_$RANDOM"
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
  local dburl="${PG_ADMIN%/*}/$db" prefix="bench-$$-$RANDOM"
  for i in $(seq 0 $((n - 1))); do
    local port=$((18100 + i))
    env COLLAB_DATA_DIR="$dir/$i" COLLAB_JWT_SECRET="$SECRET" COLLAB_PORT=$port COLLAB_LOG_LEVEL=WARNING \
        COLLAB_MESSAGES_PER_SECOND=100000 COLLAB_MAX_CONNECTIONS_PER_USER=100000 \
        COLLAB_DATABASE_URL="$dburl" COLLAB_REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}" \
        COLLAB_REDIS_PREFIX="$prefix" \
        "$PY" -m collab serve >"$OUT/$label-$sc.server$i.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    pids="${pids:+$pids,}$pid"; urls="${urls:+$urls,}http://127.0.0.1:$port"
  done
  for u in ${urls//,/ }; do wait_http "$u/healthz"; done
  local tok names redis_pid
  tok="$(env COLLAB_JWT_SECRET="$SECRET" COLLAB_DATA_DIR="$dir" "$PY" -m collab token --sub bench --ttl 7200)"
  names="$("$PY" "$ROOT/bench/projects.py" --url "${urls%%,*}" --token "$tok" --count "$(rooms_of "$sc")")"
  redis_pid="$(pgrep -x redis-server | head -1 || true)"
  # shellcheck disable=SC2046
  (cd "$BENCH_DIR" && node loadgen.mjs --server-kind socketio-yjs --url "$urls" \
      --token "$tok" --room-names "$names" --server-pids "$pids" ${redis_pid:+--aux-pids $redis_pid} \
      --label "$label/$sc" $(scenario_args "$sc") --out "$OUT/results.jsonl" >/dev/null 2>"$OUT/$label-$sc.loadgen.log")
  for p in ${pids//,/ }; do kill "$p"; done
  for p in ${pids//,/ }; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
  redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null
}

run_node() { # $1 = label (hocuspocus|ysocketio), $2 = scenario
  local label="$1" sc="$2" port kind url script
  case "$label" in
    hocuspocus) port=11235; kind=hocuspocus; url="ws://127.0.0.1:$port"; script=servers/hocuspocus.mjs ;;
    ysocketio) port=11234; kind=socketio-yjs; url="http://127.0.0.1:$port"; script=servers/ysocketio.mjs ;;
  esac
  (cd "$BENCH_DIR" && node "$script" --port "$port" >"$OUT/$label-$sc.server.log" 2>&1) &
  local pid=$!; PIDS+=("$pid")
  for _ in $(seq 1 100); do grep -q READY "$OUT/$label-$sc.server.log" 2>/dev/null && break; sleep 0.1; done
  local npid; npid="$(pgrep -P "$pid" node || echo "$pid")"
  # shellcheck disable=SC2046
  (cd "$BENCH_DIR" && node loadgen.mjs --server-kind "$kind" --url "$url" --server-pids "$npid" \
      --label "$label/$sc" $(scenario_args "$sc") --out "$OUT/results.jsonl" >/dev/null 2>"$OUT/$label-$sc.loadgen.log")
  kill "$pid" 2>/dev/null || true; kill "$npid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

for sc in $SCENARIOS; do
  for s in $SERVERS; do
    echo "== $s / $sc" >&2
    case "$s" in
      collab|collab-pg) run_collab "$s" "$sc" ;;
      collab-redis*) run_cluster "$s" "$sc" ;;
      hocuspocus|ysocketio) run_node "$s" "$sc" ;;
    esac
  done
done
(cd "$BENCH_DIR" && node summarize.mjs "$OUT/results.jsonl")
echo "raw results: $OUT" >&2

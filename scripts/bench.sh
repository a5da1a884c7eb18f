#!/usr/bin/env bash
# Rentify's benchmarks (`make bench`): throughput, latency and memory of a release
# build, printed as figures (never asserted: timings belong in reports, not tests).
#
# 1. builds the release binaries `rentify` and `rentify-loadgen`;
# 2. ensures the services (scripts/dev-services.sh);
# 3. recreates the database rentify_bench, migrates it and loads the demo data;
# 4. starts `rentify serve` on 127.0.0.1:$BENCH_PORT with rate limits off;
# 5. runs each scenario with rentify-loadgen (closed loop, keep-alive connections);
# 6. prints the server's peak and current RSS and the machine, then stops the server
#    with SIGTERM (it is killed on any exit, even an interrupted one).
#
# Usage: scripts/bench.sh [SCENARIO...]   (names to run, as in BENCH_SCENARIOS; default all)
# Environment (all optional):
#   BENCH_DURATION     measured seconds per scenario (default 10)
#   BENCH_WARMUP       unmeasured seconds before each scenario (default 2)
#   BENCH_CONCURRENCY  concurrent connections (default 32)
#   BENCH_SCENARIOS    space-separated scenario names to run (default: all)
#   BENCH_RACE_CLIENTS connections racing for the last 10 units (default 1000)
#   BENCH_RACE_RATE    open-loop booking attempts/s offered by them (default 3200, the target)
#   BENCH_DB_POOL      the server's DATABASE_MAX_CONNECTIONS (default 8; pgbench uses as many)
#   BENCH_LEDGER_CONNECTIONS  connections of ledger_settlement and its pgbench twin (default 16)
#   BENCH_LEDGER_OWNERS       owner wallets the settlements spread over (default 1000)
#   BENCH_LEDGER_SYNC_COMMIT  if set (e.g. off), SET synchronous_commit per session for both
#                      ledger scenarios (reported; the server's setting is never changed)
#   BENCH_EVENTS_RATE  events/s offered to events_outbox (default 12000, issue 6's target)
#   BENCH_EVENTS_BATCH events per consumer transaction (EVENTS_BATCH_SIZE; default 500)
#   BENCH_EVENTS_JETSTREAM_RATE  events/s offered to events_jetstream (default 1000, SmartLine's
#                      ask; its consumer handles one event per transaction, so 12000/s would
#                      only pile up a backlog that takes minutes to drain)
#   BENCH_SEARCH_LISTINGS  listings generated into rentify_bench_search (default 100000)
#   BENCH_SEARCH_RESEED=1  recreate and reseed rentify_bench_search even when it is usable
#   BENCH_SEARCH_PORT  port of the search scenarios' own server (default BENCH_PORT + 1)
#   BENCH_SEARCH_READY_TIMEOUT  seconds that server may take to answer /health/ready,
#                      i.e. to build its search index (default 300)
#   BENCH_JSON=1       one JSON object per scenario instead of text
#   BENCH_PORT         port of the server under test (default 18080)
#   REDIS_URL, NATS_URL  passed to the server; empty (the default) = in-process
#                      stand-ins, so e.g. /health/ready is one PostgreSQL round trip
#   CARGO_TARGET_DIR   default ~/.cache/rentify-target
# Exit status: 0, or 1 if the setup or any scenario failed (every request failed, or
# for the ledger: a failed transaction or a ledger check; for the events: an event not
# handled exactly once, or a backlog that did not drain).
#
# The ledger scenarios (issue 5) run against their own database rentify_bench_ledger,
# recreated for each, without the HTTP server: when only they are selected in
# BENCH_SCENARIOS the server is not started.
#
# The event scenarios (issue 6) likewise run without the server, on their own database
# rentify_bench_events, recreated for each: rentify-loadgen events produces domain
# events into the outbox at BENCH_EVENTS_RATE and runs the event consumers' runtime on
# them, in-process (events_outbox) and on NATS JetStream (events_jetstream, at
# ${NATS_URL:-nats://127.0.0.1:4222}; skipped when it does not answer).
#
# The search scenarios (issue 7) run on their own database rentify_bench_search, seeded by
# `rentify-loadgen search-seed` (BENCH_SEARCH_LISTINGS listings across Paris, 2,000 owners,
# blocked windows in the next 60 days). Seeding takes a while, so the database is kept
# between runs (and only migrated) unless it is missing, fails to migrate, holds another
# number of listings, its blocked windows are more than 30 days old, or
# BENCH_SEARCH_RESEED=1. A second `rentify serve` on it (BENCH_SEARCH_PORT) is waited for
# until /health/ready answers (its in-memory search index is built; the time is printed),
# measured by `rentify-loadgen search`, its RSS printed, and stopped:
#   search     GET /v1/search with a fixed mix of text, radius, price and availability
#              filters, then the same parameter sets as PostgreSQL full-text + PostGIS SQL
#              over a pool of BENCH_CONCURRENCY (a GIN index created if missing), and
#              their ratio;
#   suggest    GET /v1/search/suggest with 2-5 letter prefixes;
#   search_pg  the PostgreSQL twin alone (no server).
# When only these are selected the main server is not started.
#
# The load generator and the server share this machine's cores; its default of half
# the CPUs for the load generator keeps the two from starving each other, and the
# figures are for comparing runs on the same machine, not absolute capacity.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rentify-target}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
PORT=${BENCH_PORT:-18080}
BASE_URL=http://127.0.0.1:$PORT
BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/rentify_bench
PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
SERVER_LOG=${TMPDIR:-/tmp}/rentify-bench-server.log

RENTIFY=$CARGO_TARGET_DIR/release/rentify
LOADGEN=$CARGO_TARGET_DIR/release/rentify-loadgen

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- server lifecycle

SERVER_PID=""
SEARCH_SERVER_PID=""
LOADGEN_PID=""

# SIGTERM, up to 5 s, then SIGKILL: for the EXIT trap.
kill_server() {
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Runs on every exit: a benchmark must never leave a server holding the port, nor a
# load generator sending to it.
cleanup() {
  if [[ -n $LOADGEN_PID ]]; then
    kill -TERM "$LOADGEN_PID" 2>/dev/null || true
    wait "$LOADGEN_PID" 2>/dev/null || true
    LOADGEN_PID=""
  fi
  if [[ -n $SEARCH_SERVER_PID ]]; then
    kill_server "$SEARCH_SERVER_PID"
    SEARCH_SERVER_PID=""
  fi
  [[ -n $SERVER_PID ]] || return 0
  kill_server "$SERVER_PID"
  SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One GET that must succeed (status < 400); the load generator doubles as the probe so
# the script needs no curl.
probe() { probe_url "$BASE_URL$1"; }
probe_url() {
  "$LOADGEN" --url "$1" --concurrency 1 --warmup 0 --duration 1 \
    --max-requests 1 --timeout 1 >/dev/null 2>&1
}

# The server's own environment; DATABASE_URL etc. from the caller's shell are not used.
server_env=(
  DATABASE_URL="$BENCH_DATABASE_URL"
  HOST=127.0.0.1
  PORT="$PORT"
  PUBLIC_BASE_URL="$BASE_URL"
  REDIS_URL="${REDIS_URL:-}"
  NATS_URL="${NATS_URL:-}"
  RATE_LIMITS=off
  LOG_FORMAT=json
  RUST_LOG=warn
  SHUTDOWN_GRACE_SECS=10
  ACCESS_TOKEN_TTL_SECS=3600
  # PostgreSQL shares the 2 cores: 8 backends instead of the default 20 keep
  # its context switching down (the 1000-client race's p99 went from
  # 14-240 ms over runs to 13-29 ms). Size the pool to the database's cores.
  DATABASE_MAX_CONNECTIONS="${BENCH_DB_POOL:-8}"
)

start_server() {
  probe /health/live && die "something already answers on $BASE_URL; stop it or set BENCH_PORT"
  env "${server_env[@]}" "$RENTIFY" serve >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 60))
  until probe /health/live; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 20 "$SERVER_LOG" >&2
      die "rentify serve exited during start-up (log: $SERVER_LOG)"
    fi
    ((SECONDS < deadline)) || die "rentify serve did not answer $BASE_URL/health/live within 60 s"
    sleep 0.2
  done
  log "rentify serve is up on $BASE_URL (pid $SERVER_PID, log $SERVER_LOG)"
}

# Graceful stop, timed: a shutdown that hangs is a finding too. Past the grace period
# plus a margin, the EXIT trap kills it.
stop_server() {
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

stop_pid() {
  local pid=$1 started=$SECONDS status=0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS - started < 15)) || die "rentify serve still running 15 s after SIGTERM; killing it"
    sleep 0.1
  done
  wait "$pid" || status=$?
  echo "shutdown    SIGTERM -> exit status $status after $((SECONDS - started)) s"
}

# ---------------------------------------------------------------- scenarios

# BENCH_SCENARIOS and the arguments as a set; empty = everything.
declare -A WANTED=()
for name in ${BENCH_SCENARIOS:-} "$@"; do WANTED[$name]=1; done
declare -A SEEN=()
FAILED_SCENARIOS=()

# scenario NAME METHOD PATH [extra rentify-loadgen args...]
#   Runs one scenario against the server, e.g.
#     scenario create_booking POST /v1/bookings --body-file bench/booking.json \
#       --header 'Content-Type: application/json' --header 'Idempotency-Key: {{uuid}}'
#   In the body and header values {{uuid}} becomes a fresh UUIDv4 per request and
#   {{seq}} a request counter. A scenario whose every request fails is reported at the
#   end and makes the script exit 1; the others still run.
scenario() {
  local name=$1 method=$2 path=$3
  shift 3
  SEEN[$name]=1
  if ((${#WANTED[@]} > 0)) && [[ -z ${WANTED[$name]:-} ]]; then
    return 0
  fi
  local args=(--name "$name" --method "$method" --url "$BASE_URL$path"
    --concurrency "${SCENARIO_CONCURRENCY:-$CONCURRENCY}" --duration "$DURATION"
    --warmup "${SCENARIO_WARMUP:-$WARMUP}")
  [[ ${BENCH_JSON:-0} == 1 ]] && args+=(--json)
  # In the background so that an interrupt runs the traps at once instead of after
  # the scenario (bash defers traps while a foreground command runs).
  "$LOADGEN" "${args[@]}" "$@" &
  LOADGEN_PID=$!
  local status=0
  wait "$LOADGEN_PID" || status=$?
  LOADGEN_PID=""
  ((status == 0)) || FAILED_SCENARIOS+=("$name")
  [[ ${BENCH_JSON:-0} == 1 ]] || echo
}

run_scenarios() {
  # The framework's ceiling: routing, middleware and serialisation, no I/O.
  scenario health_live GET /health/live
  # One PostgreSQL round trip per request (plus Redis when REDIS_URL is set).
  scenario health_ready GET /health/ready
  booking_scenarios
  ledger_scenarios
  events_scenarios
  search_scenarios
  # Add scenarios here: scenario NAME METHOD PATH [loadgen args...]
}

# ---------------------------------------------------------------- bookings (issue 4)

psql_bench() { psql "$BENCH_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# RentEzy's race: BENCH_RACE_CLIENTS connections try to book the same two days of
# a 10-unit listing at BENCH_RACE_RATE attempts/s (open loop, so latency includes
# any queueing); then the database is checked for overselling. Then the success
# path (every request books its own hour), and pgbench running the very SQL the
# server runs per attempt, as the ceiling our figure is a fraction of.
booking_scenarios() {
  local wanted=0 name
  for name in booking_race booking_race_c32 booking_create pgbench_booking_race; do
    SEEN[$name]=1
    if ((${#WANTED[@]} == 0)) || [[ -n ${WANTED[$name]:-} ]]; then wanted=1; fi
  done
  ((wanted)) || return 0

  local LISTING_ID RENTER_TOKEN OWNER_TOKEN
  eval "$(python3 scripts/bench/booking_setup.py "$BASE_URL" 10 'Benchmark race: the last 10 e-bikes')"
  local race_listing=$LISTING_ID
  local window='"start_time": "2030-06-01T10:00:00Z", "end_time": "2030-06-03T10:00:00Z"'
  local race_body="{\"listing_id\": \"$race_listing\", $window, \"delivery_method\": \"pickup\", \"protection_plan\": \"basic\"}"
  local auth=(--header 'Content-Type: application/json' --header "Authorization: Bearer $RENTER_TOKEN"
    --header 'Idempotency-Key: {{uuid}}')

  # 1000 connections take a few seconds to open and settle: a longer warm-up.
  SCENARIO_CONCURRENCY=${BENCH_RACE_CLIENTS:-1000} SCENARIO_WARMUP=$((WARMUP > 5 ? WARMUP : 5)) \
    scenario booking_race POST /v1/bookings \
    --rate "${BENCH_RACE_RATE:-3200}" --expect-status 409 --body "$race_body" "${auth[@]}"
  if [[ -z ${WANTED[booking_race]:-} && ${#WANTED[@]} -gt 0 ]]; then :; else
    local booked overlaps
    booked=$(psql_bench -c "SELECT count(*) || ' bookings on ' || count(DISTINCT unit) || ' units'
      FROM bookings WHERE listing_id = '$race_listing' AND status NOT IN ('declined', 'cancelled')")
    overlaps=$(psql_bench -c "SELECT count(*) FROM availability_windows a JOIN availability_windows b
      ON a.listing_id = b.listing_id AND a.unit = b.unit AND a.id < b.id AND a.span && b.span
      WHERE a.listing_id = '$race_listing' AND a.status <> 'available' AND b.status <> 'available'")
    echo "oversell    $booked for 10 units; overlapping windows on one unit: $overlaps"
    [[ $booked == "10 bookings on 10 units" && $overlaps == 0 ]] || FAILED_SCENARIOS+=(booking_race_oversold)
    echo
  fi

  # The same sold-out race from 32 closed-loop connections: the server's
  # throughput without 1000 sockets to serve.
  scenario booking_race_c32 POST /v1/bookings --expect-status 409 --body "$race_body" "${auth[@]}"

  eval "$(python3 scripts/bench/booking_setup.py "$BASE_URL" 1 'Benchmark: one bike, hourly slots')"
  local slot_body="{\"listing_id\": \"$LISTING_ID\", \"start_time\": \"{{seq_hour}}\", \"end_time\": \"{{seq_hour_end}}\", \"delivery_method\": \"pickup\"}"
  auth[3]="Authorization: Bearer $RENTER_TOKEN"
  scenario booking_create POST /v1/bookings --body "$slot_body" "${auth[@]}"

  if ((${#WANTED[@]} == 0)) || [[ -n ${WANTED[pgbench_booking_race]:-} ]]; then
    pgbench_booking_race "$race_listing"
  fi
}

# pgbench runs the statement the server sends per booking attempt
# (scripts/bench/place_booking.sql, the sold-out race listing: every attempt is a
# conflict, as in the race) with as many clients as the server's pool.
pgbench_booking_race() {
  local listing=$1 renter owner script
  renter=$(psql_bench -c "SELECT id FROM users WHERE email = 'ravi@rentify.test'")
  owner=$(psql_bench -c "SELECT owner_id FROM listings WHERE id = '$listing'")
  script=$(mktemp)
  sed -e "s/:listing/$listing/g" -e "s/:renter/$renter/g" -e "s/:owner/$owner/g" \
    -e "s/:version/$(psql_bench -c "SELECT version FROM listings WHERE id = '$listing'")/g" \
    scripts/bench/place_booking.sql >"$script"
  local clients=${PGBENCH_CLIENTS:-${BENCH_DB_POOL:-8}}
  echo "scenario    pgbench_booking_race  (place_booking on the sold-out listing, $clients clients)"
  pgbench -n -M prepared -c "$clients" -j 2 -T "$DURATION" -f "$script" "$BENCH_DATABASE_URL" 2>&1 |
    awk '/latency average|tps =/ { print "            " $0 }'
  rm -f "$script"
  echo
}

# ---------------------------------------------------------------- ledger (issue 5)

LEDGER_DATABASE_URL=postgres://postgres@127.0.0.1:5432/rentify_bench_ledger
# 16: on 2 cores 8 leaves the CPUs idle during WAL flushes and 32 context-switches
# (docs/benchmarks.md, issue 5).
LEDGER_CONNECTIONS=${BENCH_LEDGER_CONNECTIONS:-16}
LEDGER_OWNERS=${BENCH_LEDGER_OWNERS:-1000}
LEDGER_SCENARIOS=(ledger_settlement pgbench_ledger_settlement)

ledger_wanted() { ((${#WANTED[@]} == 0)) || [[ -n ${WANTED[$1]:-} ]]; }

# A fresh rentify_bench_ledger: migrated by the release binary, then the EUR house
# accounts and BENCH_LEDGER_OWNERS owner wallets (scripts/bench/ledger_setup.sql),
# and a checkpoint so that no run starts with the previous one's dirty pages.
ledger_setup() {
  PGOPTIONS='-c client_min_messages=warning' psql "$PG_ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP DATABASE IF EXISTS rentify_bench_ledger WITH (FORCE);
CREATE DATABASE rentify_bench_ledger;
SQL
  env DATABASE_URL="$LEDGER_DATABASE_URL" RUST_LOG=warn LOG_FORMAT=json "$RENTIFY" migrate >/dev/null
  psql "$LEDGER_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -v owners="$LEDGER_OWNERS" \
    -f scripts/bench/ledger_setup.sql
  psql "$LEDGER_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c CHECKPOINT
}

# The zero-imbalance checks rentify-loadgen ledger makes, for the pgbench run: prints
# them and fails the scenario unless all hold.
ledger_checks() {
  local name=$1 line ok=1
  while IFS='|' read -r what value good; do
    echo "check       $what: $value  $([[ $good == t ]] && echo ok || echo FAILED)"
    [[ $good == t ]] || ok=0
  done < <(psql "$LEDGER_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'posted entries sum per currency',
       coalesce(string_agg(currency || ' ' || total, ', '), '-'), bool_and(total = 0) IS NOT FALSE
  FROM (SELECT t.currency, sum(e.amount) AS total FROM ledger_entries e
          JOIN ledger_transfers t ON t.id = e.transfer_id
         WHERE t.status = 'posted' GROUP BY 1 ORDER BY 1) s;
SELECT 'transfers not summing to 0 (or to their amount)', count(*), count(*) = 0
  FROM ledger_transfers t
  LEFT JOIN (SELECT transfer_id, sum(amount) AS total,
                    sum(amount) FILTER (WHERE amount > 0) AS credits
               FROM ledger_entries GROUP BY transfer_id) e ON e.transfer_id = t.id
 WHERE e.total IS DISTINCT FROM 0 OR e.credits IS DISTINCT FROM t.amount;
SELECT 'wallets below zero', count(*), count(*) = 0
  FROM ledger_accounts WHERE tracked AND posted - pending_debits < 0;
SELECT 'wallet running balances != their entries', count(*), count(*) = 0
  FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id
 WHERE a.tracked AND (a.posted, a.pending_debits) <> (b.posted, b.pending_debits);
SELECT 'transfers posted / pending', count(*) FILTER (WHERE status = 'posted') || ' / '
       || count(*) FILTER (WHERE status = 'pending'), true FROM ledger_transfers;
SQL
  )
  ((ok)) || FAILED_SCENARIOS+=("$name")
}

# Completed-booking settlement: per booking a pending charge, then its capture, the
# settlement to the owner's wallet and the owner's payout in one transaction; all three
# transfers credit the one platform_revenue account (crates/loadgen/src/ledger.rs).
# First through the Rust ledger API (rentify-loadgen ledger), then pgbench running the
# same SQL (scripts/bench/ledger_settlement.sql) with as many connections, each on a
# fresh database; then the ratio of the two.
ledger_scenarios() {
  local name wanted=0 rust_tps="" pg_tps=""
  for name in "${LEDGER_SCENARIOS[@]}"; do
    SEEN[$name]=1
    ledger_wanted "$name" && wanted=1
  done
  ((wanted)) || return 0
  local sync_args=() pg_options=""
  if [[ -n ${BENCH_LEDGER_SYNC_COMMIT:-} ]]; then
    sync_args=(--synchronous-commit "$BENCH_LEDGER_SYNC_COMMIT")
    pg_options="-c synchronous_commit=$BENCH_LEDGER_SYNC_COMMIT"
  fi

  if ledger_wanted ledger_settlement; then
    ledger_setup
    local out status=0
    out=$(mktemp)
    "$LOADGEN" ledger --database-url "$LEDGER_DATABASE_URL" --connections "$LEDGER_CONNECTIONS" \
      --duration "$DURATION" --warmup "$WARMUP" "${sync_args[@]}" \
      $([[ ${BENCH_JSON:-0} == 1 ]] && echo --json) >"$out" &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || status=$?
    LOADGEN_PID=""
    cat "$out"
    if [[ ${BENCH_JSON:-0} == 1 ]]; then
      rust_tps=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["transfers_per_s"])' <"$out")
    else
      rust_tps=$(awk '$1 == "throughput" { print $2 }' "$out")
      echo
    fi
    rm -f "$out"
    ((status == 0)) || FAILED_SCENARIOS+=(ledger_settlement)
  fi

  if ledger_wanted pgbench_ledger_settlement; then
    ledger_setup
    local defines=(-D owners="$LEDGER_OWNERS") kind id out
    for kind in revenue:platform_revenue escrow:escrow clearing:gateway_clearing payouts:payouts_pending; do
      id=$(psql "$LEDGER_DATABASE_URL" -XAtq -c "SELECT id FROM ledger_accounts
        WHERE kind = '${kind#*:}' AND owner_id IS NULL AND currency = 'EUR'")
      defines+=(-D "${kind%%:*}=$id")
    done
    local pgbench_args=(-n -M prepared -c "$LEDGER_CONNECTIONS" -j 2 "${defines[@]}"
      -f scripts/bench/ledger_settlement.sql)
    echo "scenario    pgbench_ledger_settlement  (scripts/bench/ledger_settlement.sql, $LEDGER_CONNECTIONS clients, -M prepared, synchronous_commit=${BENCH_LEDGER_SYNC_COMMIT:-server default})"
    # Warm-up run (discarded), then the measured one; one pgbench transaction is one
    # booking, i.e. 3 transfers.
    PGOPTIONS=$pg_options pgbench "${pgbench_args[@]}" -T "$((WARMUP > 0 ? WARMUP : 1))" \
      "$LEDGER_DATABASE_URL" >/dev/null 2>&1 || true
    out=$(mktemp)
    PGOPTIONS=$pg_options pgbench "${pgbench_args[@]}" -T "$DURATION" "$LEDGER_DATABASE_URL" >"$out" 2>&1 ||
      FAILED_SCENARIOS+=(pgbench_ledger_settlement)
    local bookings
    bookings=$(awk '/^tps = / { print $3 }' "$out")
    awk '/latency average|failed transactions|actually processed/ { print "            " $0 }' "$out"
    if [[ -n $bookings ]]; then
      pg_tps=$(awk -v b="$bookings" 'BEGIN { printf "%.1f", 3 * b }')
      echo "throughput  $pg_tps transfers/s  ($bookings bookings/s)"
    else
      tail -n 5 "$out" >&2
      FAILED_SCENARIOS+=(pgbench_ledger_settlement)
    fi
    rm -f "$out"
    ledger_checks pgbench_ledger_settlement
    echo
  fi

  if [[ -n $rust_tps && -n $pg_tps ]]; then
    awk -v r="$rust_tps" -v p="$pg_tps" 'BEGIN {
      printf "ledger      rentify-loadgen %.0f vs pgbench %.0f transfers/s: %.0f %% of pgbench\n\n", r, p, 100 * r / p }'
  fi
}

# ---------------------------------------------------------------- events (issue 6)

EVENTS_DATABASE_URL=postgres://postgres@127.0.0.1:5432/rentify_bench_events
EVENTS_NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
EVENTS_SCENARIOS=(events_outbox events_jetstream)

events_wanted() { ((${#WANTED[@]} == 0)) || [[ -n ${WANTED[$1]:-} ]]; }

# A fresh rentify_bench_events migrated by the release binary, and a checkpoint so that
# no run starts with the previous one's dirty pages.
events_setup() {
  PGOPTIONS='-c client_min_messages=warning' psql "$PG_ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP DATABASE IF EXISTS rentify_bench_events WITH (FORCE);
CREATE DATABASE rentify_bench_events;
SQL
  env DATABASE_URL="$EVENTS_DATABASE_URL" RUST_LOG=warn LOG_FORMAT=json "$RENTIFY" migrate >/dev/null
  psql "$EVENTS_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c CHECKPOINT
}

# Whether something accepts TCP connections at the host and port of a nats:// URL.
nats_reachable() {
  local hostport=${1#*://}
  hostport=${hostport##*@}
  hostport=${hostport%%[/,]*}
  local host=${hostport%:*} port=${hostport##*:}
  [[ $hostport == *:* ]] || port=4222
  timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# events_run NAME RATE [rentify-loadgen events args...]: one run on a fresh database.
events_run() {
  local name=$1 rate=$2 out status=0
  shift 2
  events_setup
  out=$(mktemp)
  "$LOADGEN" events --name "$name" --database-url "$EVENTS_DATABASE_URL" \
    --rate "$rate" --batch-size "${BENCH_EVENTS_BATCH:-500}" \
    --duration "$DURATION" --warmup "$WARMUP" \
    $([[ ${BENCH_JSON:-0} == 1 ]] && echo --json) "$@" >"$out" &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || status=$?
  LOADGEN_PID=""
  cat "$out"
  rm -f "$out"
  [[ ${BENCH_JSON:-0} == 1 ]] || echo
  ((status == 0)) || FAILED_SCENARIOS+=("$name")
}

# Outbox -> consumer (crates/loadgen/src/events.rs): 4 producer connections insert
# booking/payment/listing/message events (20 per transaction, open loop on fixed
# schedules) into the outbox of rentify_bench_events; one consumer (on `*`) runs on the
# real runtime. Printed: the sustained handled rate, the lag (handling committed -
# occurred_at) p50/p90/p99/max, the load generator's RSS, and the exactly-once checks.
# events_outbox: in-process (a cursor per consumer, a batch per transaction).
# events_jetstream: the NATS relay and a durable JetStream consumer, on a stream of the
# run's own, deleted afterwards.
events_scenarios() {
  local name wanted=0
  for name in "${EVENTS_SCENARIOS[@]}"; do
    SEEN[$name]=1
    events_wanted "$name" && wanted=1
  done
  ((wanted)) || return 0

  if events_wanted events_outbox; then
    events_run events_outbox "${BENCH_EVENTS_RATE:-12000}"
  fi

  if events_wanted events_jetstream; then
    if nats_reachable "$EVENTS_NATS_URL"; then
      events_run events_jetstream "${BENCH_EVENTS_JETSTREAM_RATE:-1000}" --nats-url "$EVENTS_NATS_URL"
    else
      if [[ ${BENCH_JSON:-0} == 1 ]]; then
        echo '{"name":"events_jetstream","skipped":"NATS not reachable"}'
      else
        echo "scenario    events_jetstream  skipped: NATS not reachable at $EVENTS_NATS_URL (scripts/dev-services.sh starts it)"
        echo
      fi
    fi
  fi
}

# ---------------------------------------------------------------- search (issue 7)

SEARCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/rentify_bench_search
SEARCH_LISTINGS=${BENCH_SEARCH_LISTINGS:-100000}
SEARCH_PORT=${BENCH_SEARCH_PORT:-$((PORT + 1))}
SEARCH_BASE_URL=http://127.0.0.1:$SEARCH_PORT
SEARCH_SERVER_LOG=${TMPDIR:-/tmp}/rentify-bench-search-server.log
SEARCH_SCENARIOS=(search suggest search_pg)

search_wanted() { ((${#WANTED[@]} == 0)) || [[ -n ${WANTED[$1]:-} ]]; }

# Why rentify_bench_search must be (re)seeded, or nothing when the one there will do.
# A kept database is migrated here (new migrations apply; a failure means reseed).
search_reseed_reason() {
  if [[ ${BENCH_SEARCH_RESEED:-0} == 1 ]]; then
    echo "BENCH_SEARCH_RESEED=1"
    return
  fi
  if [[ -z $(psql "$PG_ADMIN_URL" -XAtq -c "SELECT 1 FROM pg_database WHERE datname = 'rentify_bench_search'") ]]; then
    echo "it does not exist"
    return
  fi
  if ! env DATABASE_URL="$SEARCH_DATABASE_URL" RUST_LOG=warn LOG_FORMAT=json "$RENTIFY" migrate >/dev/null 2>&1; then
    echo "rentify migrate failed on it"
    return
  fi
  local count stale
  IFS='|' read -r count stale < <(psql "$SEARCH_DATABASE_URL" -XAtq 2>/dev/null <<'SQL' || true
SELECT (SELECT count(*) FROM listings l JOIN users u ON u.id = l.owner_id
         WHERE l.status = 'active' AND u.email LIKE '%@search-bench.rentify.test'),
       coalesce((SELECT min(start_time) < now() - interval '30 days'
                   FROM availability_windows WHERE note = 'search-bench'), true);
SQL
  )
  if [[ ${count:-0} != "$SEARCH_LISTINGS" ]]; then
    echo "it holds ${count:-no} seeded listings, not $SEARCH_LISTINGS"
  elif [[ $stale != f ]]; then
    echo "its blocked windows are more than 30 days old"
  fi
}

# rentify_bench_search, seeded (or kept: see search_reseed_reason), then a checkpoint.
search_setup() {
  local reason
  reason=$(search_reseed_reason)
  if [[ -n $reason ]]; then
    log "seeding rentify_bench_search with $SEARCH_LISTINGS listings ($reason)"
    PGOPTIONS='-c client_min_messages=warning' psql "$PG_ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP DATABASE IF EXISTS rentify_bench_search WITH (FORCE);
CREATE DATABASE rentify_bench_search;
SQL
    env DATABASE_URL="$SEARCH_DATABASE_URL" RUST_LOG=warn LOG_FORMAT=json "$RENTIFY" migrate >/dev/null
    # The seed's report is text: on stderr when stdout is JSON.
    if [[ ${BENCH_JSON:-0} == 1 ]]; then
      "$LOADGEN" search-seed --database-url "$SEARCH_DATABASE_URL" --listings "$SEARCH_LISTINGS" >&2
    else
      "$LOADGEN" search-seed --database-url "$SEARCH_DATABASE_URL" --listings "$SEARCH_LISTINGS"
    fi
  else
    log "rentify_bench_search kept ($SEARCH_LISTINGS seeded listings; BENCH_SEARCH_RESEED=1 reseeds)"
  fi
  psql "$SEARCH_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c CHECKPOINT
}

# A `rentify serve` of the search scenarios' own on rentify_bench_search, waited for
# until /health/ready: the search index is built from the database at start-up.
start_search_server() {
  probe_url "$SEARCH_BASE_URL/health/live" &&
    die "something already answers on $SEARCH_BASE_URL; stop it or set BENCH_SEARCH_PORT"
  env "${server_env[@]}" DATABASE_URL="$SEARCH_DATABASE_URL" PORT="$SEARCH_PORT" \
    PUBLIC_BASE_URL="$SEARCH_BASE_URL" "$RENTIFY" serve >"$SEARCH_SERVER_LOG" 2>&1 &
  SEARCH_SERVER_PID=$!
  local started=$SECONDS timeout=${BENCH_SEARCH_READY_TIMEOUT:-300}
  until probe_url "$SEARCH_BASE_URL/health/ready"; do
    if ! kill -0 "$SEARCH_SERVER_PID" 2>/dev/null; then
      tail -n 20 "$SEARCH_SERVER_LOG" >&2
      die "rentify serve (search) exited during start-up (log: $SEARCH_SERVER_LOG)"
    fi
    ((SECONDS - started < timeout)) ||
      die "rentify serve (search) not ready on $SEARCH_BASE_URL/health/ready within $timeout s (log: $SEARCH_SERVER_LOG)"
    sleep 0.2
  done
  SEARCH_READY_S=$((SECONDS - started))
  SEARCH_READY_RSS=$(status_field VmRSS "$SEARCH_SERVER_PID")
  log "rentify serve (search) ready on $SEARCH_BASE_URL after ${SEARCH_READY_S} s (pid $SEARCH_SERVER_PID, log $SEARCH_SERVER_LOG)"
}

# search / suggest / search_pg: one rentify-loadgen search run with the phases asked
# for (crates/loadgen/src/search/), the search server started only for the HTTP ones.
search_scenarios() {
  local name wanted=0 phases=() http=0 status=0
  for name in "${SEARCH_SCENARIOS[@]}"; do
    SEEN[$name]=1
    search_wanted "$name" && wanted=1
  done
  ((wanted)) || return 0
  if search_wanted search; then phases+=(search); http=1; fi
  if search_wanted suggest; then phases+=(suggest); http=1; fi
  if search_wanted search || search_wanted search_pg; then phases+=(pg); fi

  search_setup
  ((http)) && start_search_server
  local list
  list=$(IFS=,; echo "${phases[*]}")
  "$LOADGEN" search --base-url "$SEARCH_BASE_URL" --database-url "$SEARCH_DATABASE_URL" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --phases "$list" \
    $([[ ${BENCH_JSON:-0} == 1 ]] && echo --json) &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || status=$?
  LOADGEN_PID=""
  if ((status != 0)); then
    for name in "${SEARCH_SCENARIOS[@]}"; do
      search_wanted "$name" && FAILED_SCENARIOS+=("$name")
    done
  fi
  if ((http)); then
    local peak now
    peak=$(status_field VmHWM "$SEARCH_SERVER_PID")
    now=$(status_field VmRSS "$SEARCH_SERVER_PID")
    if [[ ${BENCH_JSON:-0} == 1 ]]; then
      echo "{\"name\":\"search_server\",\"ready_s\":$SEARCH_READY_S,\"rss_ready\":\"$SEARCH_READY_RSS\",\"rss_peak\":\"$peak\",\"rss\":\"$now\"}"
      stop_pid "$SEARCH_SERVER_PID" >&2
    else
      echo "server      search server: /health/ready after ${SEARCH_READY_S} s (index built), RSS then $SEARCH_READY_RSS; peak $peak, now $now"
      stop_pid "$SEARCH_SERVER_PID"
    fi
    SEARCH_SERVER_PID=""
  fi
  [[ ${BENCH_JSON:-0} == 1 ]] || echo
}

# ---------------------------------------------------------------- report helpers

# status_field FIELD [PID]: a /proc status field in MiB, of the main server by default.
status_field() { awk -v k="$1:" '$1 == k { printf "%.1f MiB", $2 / 1024 }' "/proc/${2:-$SERVER_PID}/status"; }

print_memory() {
  echo "server RSS  peak $(status_field VmHWM), now $(status_field VmRSS)"
}

print_machine() {
  local model mem
  model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "machine     $(nproc) CPUs, ${model:-unknown CPU}, $mem RAM"
  echo "commit      $(git describe --always --dirty 2>/dev/null || echo unknown)"
}

# ---------------------------------------------------------------- main

log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -p rentify -p rentify-loadgen

# Redis and NATS are only needed when the server is told to use them.
services_args=()
[[ -n ${REDIS_URL:-}${NATS_URL:-} ]] || services_args+=(--no-optional)
DATABASE_URL=$BENCH_DATABASE_URL scripts/dev-services.sh "${services_args[@]}"

# The HTTP server is needed unless only ledger, event and search scenarios were asked for
# (the search scenarios start a server of their own).
NEED_SERVER=1
if ((${#WANTED[@]} > 0)); then
  NEED_SERVER=0
  for name in "${!WANTED[@]}"; do
    [[ " ${LEDGER_SCENARIOS[*]} ${EVENTS_SCENARIOS[*]} ${SEARCH_SCENARIOS[*]} " == *" $name "* ]] ||
      NEED_SERVER=1
  done
fi

if ((NEED_SERVER)); then
  log "recreating database rentify_bench"
  psql "$PG_ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP DATABASE IF EXISTS rentify_bench WITH (FORCE);
CREATE DATABASE rentify_bench;
SQL
  env "${server_env[@]}" "$RENTIFY" migrate
  env "${server_env[@]}" "$RENTIFY" seed --demo
  start_server
fi
echo
echo "=== Rentify benchmarks: ${DURATION} s per scenario after ${WARMUP} s warm-up, concurrency $CONCURRENCY"
echo
run_scenarios

for name in "${!WANTED[@]}"; do
  [[ -n ${SEEN[$name]:-} ]] || log "warning: BENCH_SCENARIOS names unknown scenario '$name'"
done

if ((NEED_SERVER)); then
  print_memory
  print_machine
  stop_server
else
  print_machine
fi

if ((${#FAILED_SCENARIOS[@]} > 0)); then
  die "every request failed in: ${FAILED_SCENARIOS[*]}"
fi

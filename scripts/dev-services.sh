#!/usr/bin/env bash
# Make sure the services Rentify's dev loop and test suite talk to are up:
#   PostgreSQL (with PostGIS and btree_gist), Redis, NATS (JetStream), and the
#   application database. Missing pieces are installed from Debian's packages and
#   started, when we are root or have passwordless sudo; otherwise the script says
#   exactly what to install and exits 1.
#
# Idempotent, and fast (well under 2 s) when everything is already running.
#
# Usage: scripts/dev-services.sh [--no-optional]
#   --no-optional   only PostgreSQL/PostGIS and the database; leave Redis and NATS alone
#                   (the app has in-process fallbacks for both; the tests use the real ones)
#
# Environment (all optional):
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/rentify. A non-local host is
#                 only checked, never installed or started; its database name is created.
#   REDIS_URL     default redis://127.0.0.1:6379 (empty means the default here too)
#   NATS_URL      default nats://127.0.0.1:4222  (first entry of a comma list is used)
set -euo pipefail

DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/rentify
DEFAULT_REDIS_URL=redis://127.0.0.1:6379
DEFAULT_NATS_URL=nats://127.0.0.1:4222
APT_LOG=${TMPDIR:-/tmp}/rentify-dev-services-apt.log
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

WANT_OPTIONAL=1
for arg in "$@"; do
  case $arg in
    --no-optional) WANT_OPTIONAL=0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "dev-services: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- helpers

# One status line per service: "<name> <state> <detail>".
status() { printf '%-9s %-10s %s\n' "$1" "$2" "$3"; }
have() { command -v "$1" >/dev/null 2>&1; }

# Privilege: root, passwordless sudo, or none (then we only report what is missing).
if [[ $EUID -eq 0 ]]; then
  PRIV=root
elif have sudo && sudo -n true 2>/dev/null; then
  PRIV=sudo
else
  PRIV=none
fi
as_root() { if [[ $PRIV == root ]]; then "$@"; else sudo -n "$@"; fi; }

# Without privilege, remember what the user must do and report it all at the end.
MISSING_PKGS=()
MANUAL_STEPS=()
FAILED=0

# apt-get install, with a single 'apt-get update' per run, and only when needed.
APT_UPDATED=0
apt_install() {
  echo "dev-services: installing $* (log: $APT_LOG)" >&2
  if [[ $APT_UPDATED -eq 0 ]]; then
    as_root apt-get -o DPkg::Lock::Timeout=120 update -q >>"$APT_LOG" 2>&1 ||
      { tail -n 20 "$APT_LOG" >&2; echo "dev-services: apt-get update failed" >&2; exit 1; }
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "$@" >>"$APT_LOG" 2>&1 ||
    { tail -n 20 "$APT_LOG" >&2; echo "dev-services: apt-get install $* failed" >&2; exit 1; }
}

# Install packages if we may; otherwise record them and return 1 so the caller skips
# whatever depended on them.
install_or_report() {
  if [[ $PRIV == none ]]; then
    MISSING_PKGS+=("$@")
    FAILED=1
    return 1
  fi
  apt_install "$@"
}

# Run a start command as root if we may; otherwise record it for the user.
# Returns 1 (and marks the run failed) if the service could not be started.
start_or_report() {
  if [[ $PRIV == none ]]; then
    MANUAL_STEPS+=("sudo $(printf '%q ' "$@")") # %q: printed ready to copy-paste
    FAILED=1
    return 1
  fi
  as_root "$@" >/dev/null || { FAILED=1; return 1; }
}

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# parse_url URL: split scheme://[userinfo@]host[:port][/path][?query] into
# U_SCHEME U_AUTH (userinfo@host:port) U_HOST U_PORT U_PATH U_QUERY.
parse_url() {
  local rest=$1 hostport
  U_SCHEME=${rest%%://*}
  rest=${rest#*://}
  U_QUERY=""
  if [[ $rest == *\?* ]]; then U_QUERY="?${rest#*\?}"; rest=${rest%%\?*}; fi
  U_PATH=""
  if [[ $rest == */* ]]; then U_PATH=${rest#*/}; rest=${rest%%/*}; fi
  U_AUTH=$rest
  hostport=${rest##*@} # userinfo may contain ':'; '@' in a password must be %-encoded
  U_PORT=""
  if [[ $hostport == \[* ]]; then # [ipv6]:port
    U_HOST=${hostport%%]*}
    U_HOST=${U_HOST#\[}
    [[ $hostport == *]:* ]] && U_PORT=${hostport##*]:}
  else
    U_HOST=${hostport%%:*}
    [[ $hostport == *:* ]] && U_PORT=${hostport##*:}
  fi
  return 0
}

# Local means: this machine, where we may install and start things.
is_local() {
  case $1 in
    "" | localhost | 127.* | ::1 | /*) return 0 ;; # empty or /path = Unix socket
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------- PostgreSQL

pg_cluster_version() { ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1; }

# A fresh Debian install asks for passwords on 127.0.0.1; the dev setup (and this
# machine) uses trust on loopback. Only ever applied to a cluster we just installed.
pg_trust_loopback() {
  local hba
  hba=/etc/postgresql/$(pg_cluster_version)/main/pg_hba.conf
  [[ -f $hba ]] || return 0
  grep -q 'rentify dev-services' "$hba" && return 0
  as_root sed -i '1i # Added by rentify scripts/dev-services.sh (dev machine): trust loopback TCP\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(pg_cluster_version)" main reload >/dev/null 2>&1 || true
}

# The test suite runs several apps at once, each with an API pool, a job pool and
# job listeners: Debian's default of 100 connections ran out (`too many clients`).
# A local dev/CI cluster gets at least PG_MIN_CONNECTIONS (a restart, once).
PG_MIN_CONNECTIONS=${PG_MIN_CONNECTIONS:-300}
pg_ensure_connections() {
  local current
  current=$(psql "$PG_ADMIN_URL" -XAtqc 'SHOW max_connections' 2>/dev/null) || return 0
  [[ $current =~ ^[0-9]+$ ]] && ((current >= PG_MIN_CONNECTIONS)) && return 0
  psql "$PG_ADMIN_URL" -XAtqc "ALTER SYSTEM SET max_connections = $PG_MIN_CONNECTIONS" >/dev/null || return 0
  as_root pg_ctlcluster --skip-systemctl-redirect "$(pg_cluster_version)" main restart >/dev/null 2>&1 || return 0
  wait_for 30 pg_isready -q -d "$PG_ADMIN_URL" || true
}

# One query for everything we want to know; prints "version|postgis|btree_gist|db_exists".
pg_probe() {
  psql "$PG_ADMIN_URL" -XAtq -F'|' -v db="$PG_DB" <<'SQL'
SELECT split_part(current_setting('server_version'), ' ', 1),
       coalesce((SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'), ''),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gist'),
       EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db');
SQL
}

ensure_postgres() {
  local url=${DATABASE_URL:-$DEFAULT_DATABASE_URL} state=ok installed_pg=0 probe ver postgis btree dbx major
  parse_url "$url"
  PG_DB=${U_PATH:-rentify}
  PG_ADMIN_URL="${U_SCHEME}://${U_AUTH}/postgres${U_QUERY}" # same server, maintenance db
  local where="${U_HOST:-socket}:${U_PORT:-5432}" local_pg=0
  is_local "$U_HOST" && local_pg=1

  # Client tools (and, when local, the server itself).
  if [[ $local_pg -eq 1 ]]; then
    if ! have pg_isready || ! have psql || [[ -z $(pg_cluster_version) ]]; then
      install_or_report postgresql postgresql-contrib || { status postgres missing "install postgresql"; return 1; }
      installed_pg=1
      state=installed
    fi
  elif ! have pg_isready || ! have psql; then
    install_or_report postgresql-client || { status postgres missing "install postgresql-client"; return 1; }
  fi

  if ! pg_isready -q -d "$PG_ADMIN_URL"; then
    if [[ $local_pg -eq 0 ]]; then
      status postgres down "$where is not reachable (remote DATABASE_URL: not started here)"
      FAILED=1
      return 1
    fi
    start_or_report pg_ctlcluster --skip-systemctl-redirect "$(pg_cluster_version)" main start ||
      { status postgres down "not running${MANUAL_STEPS:+ (see below)}"; return 1; }
    wait_for 30 pg_isready -q -d "$PG_ADMIN_URL" ||
      { status postgres down "started but $where not accepting connections"; FAILED=1; return 1; }
    [[ $state == ok ]] && state=started
  fi
  [[ $installed_pg -eq 1 ]] && pg_trust_loopback

  if ! probe=$(pg_probe 2>&1); then
    status postgres error "$where: cannot connect as in DATABASE_URL: ${probe##*FATAL:  }"
    FAILED=1
    return 1
  fi
  IFS='|' read -r ver postgis btree dbx <<<"$probe"
  [[ $local_pg -eq 1 ]] && pg_ensure_connections
  status postgres "$state" "$where (PostgreSQL $ver)"

  # Extensions: PostGIS is its own package; btree_gist ships with the server/contrib.
  if [[ -z $postgis || $btree != t ]]; then
    if [[ $local_pg -eq 0 ]]; then
      status postgis missing "server $where lacks postgis/btree_gist: install them on that server"
      FAILED=1
      return 1
    fi
    major=${ver%%.*}
    local pkgs=()
    [[ -z $postgis ]] && pkgs+=("postgresql-$major-postgis-3")
    [[ $btree != t ]] && pkgs+=(postgresql-contrib)
    install_or_report "${pkgs[@]}" || { status postgis missing "install ${pkgs[*]}"; return 1; }
    IFS='|' read -r ver postgis btree dbx <<<"$(pg_probe)"
    [[ -n $postgis && $btree == t ]] ||
      { status postgis missing "still unavailable after installing ${pkgs[*]}"; FAILED=1; return 1; }
    status postgis installed "postgis $postgis, btree_gist"
  else
    status postgis ok "postgis $postgis, btree_gist"
  fi

  # The application database (CREATE DATABASE cannot run in a transaction: \gexec).
  if [[ $dbx == t ]]; then
    status database ok "$PG_DB"
  else
    psql "$PG_ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 -v db="$PG_DB" >/dev/null <<'SQL' ||
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
      { status database error "could not create $PG_DB"; FAILED=1; return 1; }
    status database created "$PG_DB"
  fi
}

# ---------------------------------------------------------------- Redis

redis_ping() { [[ $(timeout 2 redis-cli -u "$1" --no-auth-warning ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
  local url=${REDIS_URL:-$DEFAULT_REDIS_URL} state=ok
  parse_url "$url"
  local host=${U_HOST:-127.0.0.1} port=${U_PORT:-6379}
  local where="$host:$port"

  if is_local "$host"; then
    if ! have redis-server || ! have redis-cli; then
      install_or_report redis-server || { status redis missing "install redis-server"; return 1; }
      state=installed
    fi
    if ! redis_ping "$url"; then
      # Ephemeral: no RDB/AOF on disk. "-::1" = also bind ::1 if the host has IPv6.
      as_root mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
      start_or_report redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
        { status redis down "not running${MANUAL_STEPS:+ (see below)}"; return 1; }
      wait_for 10 redis_ping "$url" || { status redis down "started but $where does not answer PING"; FAILED=1; return 1; }
      [[ $state == ok ]] && state=started
    fi
  else
    have redis-cli || install_or_report redis-tools || { status redis missing "install redis-tools"; return 1; }
    redis_ping "$url" || { status redis down "$where does not answer PING (remote REDIS_URL)"; FAILED=1; return 1; }
  fi
  status redis "$state" "$where"
}

# ---------------------------------------------------------------- NATS

# NATS greets every client with an INFO line; print it (fails if nobody listens).
# The inner script is single-quoted on purpose: $0/$1 are its own arguments.
# shellcheck disable=SC2016
nats_info() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r -t 1 line <&3 && printf "%s\n" "$line"' "$1" "$2"
}

ensure_nats() {
  local url=${NATS_URL:-$DEFAULT_NATS_URL} state=ok info
  parse_url "${url%%,*}"
  local host=${U_HOST:-127.0.0.1} port=${U_PORT:-4222}
  local where="$host:$port"

  if ! info=$(nats_info "$host" "$port" 2>/dev/null); then
    if ! is_local "$host"; then
      status nats down "$where is not reachable (remote NATS_URL)"
      FAILED=1
      return 1
    fi
    if [[ ! -x /usr/sbin/nats-server ]]; then
      install_or_report nats-server || { status nats missing "install nats-server"; return 1; }
      state=installed
    fi
    as_root mkdir -p /var/lib/nats-server 2>/dev/null || true
    # The pidfile makes start-stop-daemon track *this* instance rather than refuse to
    # start because some other nats-server process (another port, a hung one) exists.
    start_or_report start-stop-daemon --start --oknodo --background \
      --make-pidfile --pidfile /run/rentify-nats-server.pid --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p "$port" -js -sd /var/lib/nats-server -l /var/log/nats-server.log ||
      { status nats down "not running${MANUAL_STEPS:+ (see below)}"; return 1; }
    wait_for 10 nats_info "$host" "$port" || { status nats down "started but $where is not answering"; FAILED=1; return 1; }
    info=$(nats_info "$host" "$port")
    [[ $state == ok ]] && state=started
  fi
  if [[ $info == *'"jetstream":true'* ]]; then
    status nats "$state" "$where (JetStream)"
  else
    status nats "$state" "$where (WARNING: JetStream is off; restart nats-server with -js)"
  fi
}

# ---------------------------------------------------------------- main

# Each step reports its own failure; keep going so one run shows everything missing.
ensure_postgres || true
if [[ $WANT_OPTIONAL -eq 1 ]]; then
  ensure_redis || true
  ensure_nats || true
else
  status redis skipped "--no-optional"
  status nats skipped "--no-optional"
fi

if [[ $FAILED -ne 0 ]]; then
  if ((${#MISSING_PKGS[@]} + ${#MANUAL_STEPS[@]} > 0)); then
    echo
    echo "Not root and no passwordless sudo. Run these, then re-run $0:"
    ((${#MISSING_PKGS[@]} > 0)) && echo "  sudo apt-get update && sudo apt-get install -y ${MISSING_PKGS[*]}"
    for step in ${MANUAL_STEPS[@]+"${MANUAL_STEPS[@]}"}; do echo "  $step"; done
    ((${#MISSING_PKGS[@]} > 0)) && echo "  (then start what was installed; this script prints the commands on its next run)"
  fi
  exit 1
fi

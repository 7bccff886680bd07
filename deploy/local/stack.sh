#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka (KRaft), FerretDB (MongoDB wire protocol, SQLite)
# and Mailpit (SMTP with a REST API), run as plain processes.
#
#   stack.sh up       fetch/build what is missing, start what is stopped, create the topics
#   stack.sh down     stop every server of the stack
#   stack.sh status   one line per server; exit 0 when all run, 3 otherwise
#
# Everything lives under $STACK_DIR (default .stack/, git-ignored): downloads and builds are kept,
# so a later `up` takes seconds.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/deploy/local"
STACK_DIR="${STACK_DIR:-$REPO/.stack}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

KAFKA_PORT="${STACK_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${STACK_CONTROLLER_PORT:-9093}"
MONGO_PORT="${STACK_MONGO_PORT:-27017}"
SMTP_PORT="${STACK_SMTP_PORT:-1025}"
MAILPIT_HTTP_PORT="${STACK_MAILPIT_HTTP_PORT:-8025}"
MAILPIT_VERSION="v1.33.1"
KAFKA_HEAP="${STACK_KAFKA_HEAP:-512m}"

BIN="$STACK_DIR/bin"
LOGS="$STACK_DIR/logs"
PIDS="$STACK_DIR/pids"

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# A short hash of the files that produce an artifact: rebuild only when they change.
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_holder() {
  local who
  who="$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1, pid \2/p' | head -n 1)"
  printf '%s' "${who:-unknown process}"
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null; }

running() {
  local pid
  pid="$(pid_of "$1")" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# --- fetch and build (first run only) --------------------------------------------------------

ensure_kafka_jars() {
  local libs="$STACK_DIR/kafka/libs" stamp
  stamp="$(fingerprint "$HERE/kafka/pom.xml")"
  [[ "$(cat "$libs/.stamp" 2>/dev/null)" == "$stamp" ]] && return 0
  need java "install a JDK 17+ (Debian: openjdk-17-jdk-headless)"
  need mvn "install Maven (Debian: maven)"
  log "kafka: fetching the broker's jars (first run only)…"
  rm -rf "$libs"
  mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" >"$LOGS/kafka-fetch.log" 2>&1 \
    || { tail -n 20 "$LOGS/kafka-fetch.log" >&2; die "fetching Kafka's jars failed; see $LOGS/kafka-fetch.log"; }
  echo "$stamp" >"$libs/.stamp"
}

ensure_ferretdb() {
  local stamp
  stamp="$(fingerprint "$HERE/ferretdb/main.go" "$HERE/ferretdb/go.mod" "$HERE/ferretdb/go.sum")"
  [[ -x "$BIN/ferretdb" && "$(cat "$BIN/.ferretdb.stamp" 2>/dev/null)" == "$stamp" ]] && return 0
  need go "install Go 1.24+ (https://go.dev/doc/install or Debian: golang)"
  log "ferretdb: building from the Go module (first run only, about 2 minutes)…"
  (cd "$HERE/ferretdb" && go build -buildvcs=false -tags ferretdb_no_postgresql -o "$BIN/ferretdb" .) \
    >"$LOGS/ferretdb-build.log" 2>&1 \
    || { tail -n 20 "$LOGS/ferretdb-build.log" >&2; die "building FerretDB failed; see $LOGS/ferretdb-build.log"; }
  echo "$stamp" >"$BIN/.ferretdb.stamp"
}

ensure_mailpit() {
  [[ -x "$BIN/mailpit" && "$(cat "$BIN/.mailpit.stamp" 2>/dev/null)" == "$MAILPIT_VERSION" ]] && return 0
  need go "install Go 1.24+ (https://go.dev/doc/install or Debian: golang)"
  log "mailpit: building $MAILPIT_VERSION from the Go module (first run only, about a minute)…"
  GOBIN="$BIN" go install -buildvcs=false "github.com/axllent/mailpit@$MAILPIT_VERSION" \
    >"$LOGS/mailpit-build.log" 2>&1 \
    || { tail -n 20 "$LOGS/mailpit-build.log" >&2; die "building Mailpit failed; see $LOGS/mailpit-build.log"; }
  echo "$MAILPIT_VERSION" >"$BIN/.mailpit.stamp"
}

# --- start, wait, stop -----------------------------------------------------------------------

# start NAME PORT LOGFILE COMMAND...: start unless ours already runs; refuse a port taken by others.
start() {
  local name="$1" port="$2" logfile="$3"
  shift 3
  if running "$name"; then
    log "$name: already running (pid $(pid_of "$name"))"
    return 0
  fi
  if port_open "$port"; then
    die "port $port (for $name) is already taken by $(port_holder "$port"); stop it or free the port"
  fi
  # The background command is the server itself (no setsid, which forks under job control),
  # so that $! is the pid `down` must stop.
  nohup "$@" >>"$logfile" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

# wait_for NAME PORT SECONDS LOGFILE: until the port answers, the process dies, or time runs out.
wait_for() {
  local name="$1" port="$2" seconds="$3" logfile="$4" tenths=0
  until port_open "$port"; do
    if ! running "$name"; then
      tail -n 30 "$logfile" >&2
      die "$name exited while starting; see $logfile"
    fi
    if (( tenths >= seconds * 10 )); then
      tail -n 30 "$logfile" >&2
      die "$name did not open port $port within ${seconds}s; see $logfile"
    fi
    sleep 0.1
    tenths=$((tenths + 1))
  done
}

start_kafka() {
  local dir="$STACK_DIR/kafka" props="$STACK_DIR/kafka/server.properties"
  mkdir -p "$dir/data" "$LOGS/kafka"
  sed -e "s|@LOG_DIRS@|$dir/data|" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" "$HERE/kafka/server.properties" >"$props"
  local classpath="$dir/libs/*"
  local -a java_opts=(
    "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" "-Dkafka.logs.dir=$LOGS/kafka"
  )
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$classpath" "${java_opts[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)"
    java -cp "$classpath" "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" \
      >>"$LOGS/kafka.log" 2>&1 || die "formatting Kafka's data directory failed; see $LOGS/kafka.log"
  fi
  start kafka "$KAFKA_PORT" "$LOGS/kafka.log" java "${java_opts[@]}" -cp "$classpath" kafka.Kafka "$props"
  wait_for kafka "$KAFKA_PORT" 90 "$LOGS/kafka/server.log"
}

create_topics() {
  if [[ ! -x "$PYTHON" ]]; then
    log "topics: no Python environment at $PYTHON yet (make venv); the services create them"
    return 0
  fi
  (cd "$REPO" && KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" "$PYTHON" -m shared.kafka_topics) \
    | sed 's/^/[stack] /' || die "creating the topics failed"
}

stop() {
  local name="$1" pid waited=0
  if ! running "$name"; then
    rm -f "$PIDS/$name.pid"
    return 0
  fi
  pid="$(pid_of "$name")"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && (( waited < 150 )); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: did not stop within 15 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
  log "$name: stopped"
}

up() {
  mkdir -p "$BIN" "$LOGS" "$PIDS"
  ensure_kafka_jars
  ensure_ferretdb
  ensure_mailpit
  mkdir -p "$STACK_DIR/ferretdb/data" "$STACK_DIR/mailpit"

  start ferretdb "$MONGO_PORT" "$LOGS/ferretdb.log" \
    "$BIN/ferretdb" -listen "127.0.0.1:$MONGO_PORT" -data "$STACK_DIR/ferretdb/data"
  start mailpit "$SMTP_PORT" "$LOGS/mailpit.log" \
    "$BIN/mailpit" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
    --smtp-auth-accept-any --smtp-auth-allow-insecure -d "$STACK_DIR/mailpit/mailpit.db"
  start_kafka
  wait_for ferretdb "$MONGO_PORT" 30 "$LOGS/ferretdb.log"
  wait_for mailpit "$SMTP_PORT" 30 "$LOGS/mailpit.log"
  wait_for mailpit "$MAILPIT_HTTP_PORT" 30 "$LOGS/mailpit.log"
  create_topics
  status
}

down() {
  stop mailpit
  stop ferretdb
  stop kafka
}

status() {
  local code=0 line
  for line in "kafka|127.0.0.1:$KAFKA_PORT" "ferretdb|mongodb://127.0.0.1:$MONGO_PORT" \
              "mailpit|smtp 127.0.0.1:$SMTP_PORT, api http://127.0.0.1:$MAILPIT_HTTP_PORT"; do
    local name="${line%%|*}" address="${line#*|}"
    if running "$name"; then
      log "$name: running (pid $(pid_of "$name")) on $address"
    else
      log "$name: stopped"
      code=3
    fi
  done
  return "$code"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka 4 (KRaft), FerretDB 1 (MongoDB wire protocol on
# SQLite) and Mailpit (SMTP with a REST API), run as plain background processes on 127.0.0.1.
#
#   stack.sh up       fetch/build what is missing or outdated, start what is stopped, create topics
#   stack.sh down     stop every server of the stack; none of its processes keeps running
#   stack.sh down NAME...  stop only the named servers (kafka, ferretdb, mailpit)
#   stack.sh status   one line per server; exit 0 when all of them run, 3 otherwise
#
# All state is under $STACK_DIR (default <repo>/.stack, git-ignored): jars, binaries, data, logs,
# pid files. Each download or build is kept with a hash of its inputs (pom.xml, the FerretDB
# module, the Mailpit version), so only the first `up` after a change is slow.
#
# Ports: STACK_KAFKA_PORT (9092), STACK_CONTROLLER_PORT (9093), STACK_MONGO_PORT (27017),
# STACK_SMTP_PORT (1025), STACK_MAILPIT_HTTP_PORT (8025). The services and tests expect the
# defaults. Needs Linux (setsid, ps, ss), Java 17+, and Maven and Go for the first run.
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
FERRETDB_TAGS="ferretdb_no_postgresql" # SQLite backend only: a smaller, faster build
KAFKA_HEAP="${STACK_KAFKA_HEAP:-512m}"  # the Kafka tarball's 1 GiB default is more than tests need
KAFKA_WAIT=60 OTHER_WAIT=30 STOP_WAIT=15 # seconds

SERVERS=(kafka ferretdb mailpit)
BIN="$STACK_DIR/bin"
LIBS="$STACK_DIR/kafka/libs"
LOGS="$STACK_DIR/logs"
PIDS="$STACK_DIR/pids"
JAVA=(java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" "-Dkafka.logs.dir=$LOGS"
  -cp "$LIBS/*")
STARTED=()    # servers this `up` started: stopped again if it fails half-way
declare -A SEEN # log file -> its size when this `up` started its server: older lines do not count

log() { printf '[stack] %s\n' "$*"; }
die() {
  printf '[stack] error: %s\n' "$*" >&2
  exit 1
}

# --- what each server is ------------------------------------------------------------------------

ports_of() {
  case "$1" in
    kafka) echo "$KAFKA_PORT $CONTROLLER_PORT" ;;
    ferretdb) echo "$MONGO_PORT" ;;
    mailpit) echo "$SMTP_PORT $MAILPIT_HTTP_PORT" ;;
  esac
}

address_of() {
  case "$1" in
    kafka) echo "127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$CONTROLLER_PORT)" ;;
    ferretdb) echo "mongodb://127.0.0.1:$MONGO_PORT" ;;
    mailpit) echo "smtp://127.0.0.1:$SMTP_PORT, api http://127.0.0.1:$MAILPIT_HTTP_PORT/api/v1" ;;
  esac
}

# Part of the command line that only our copy of a server has (paths under $STACK_DIR): it tells
# ours from another Kafka or mongod, and finds ours even when its pid file is gone.
signature_of() {
  case "$1" in
    kafka) echo "kafka.Kafka $STACK_DIR/kafka/server.properties" ;;
    ferretdb) echo "$BIN/ferretdb -listen" ;;
    mailpit) echo "$BIN/mailpit --smtp" ;;
  esac
}

wait_of() { if [[ "$1" == kafka ]]; then echo "$KAFKA_WAIT"; else echo "$OTHER_WAIT"; fi; }

# --- processes and ports ------------------------------------------------------------------------

# find_ours NAME: the pids of our copies of NAME (normally one).
find_ours() {
  local sig pid args
  sig="$(signature_of "$1")"
  while read -r pid args; do
    if [[ "$args" == *"$sig"* ]]; then echo "$pid"; fi
  done < <(ps -ww -eo pid=,args=)
}

# ours PID NAME: PID is alive and is our NAME (an exited child, a zombie, no longer matches).
ours() { [[ "$(ps -ww -o args= -p "$1" 2>/dev/null)" == *"$(signature_of "$2")"* ]]; }

# live_pid NAME: the pid of our running NAME. The pid file may be stale (the system can give its
# pid to another program after a crash), so it is checked, and a copy without one is found too.
live_pid() {
  local pid
  pid="$(cat "$PIDS/$1.pid" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" "$1"; then
    echo "$pid"
    return 0
  fi
  pid="$(find_ours "$1" | head -n 1)"
  [[ -n "$pid" ]] && echo "$pid"
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT. Bounded, because a listener
# whose backlog is full leaves connect() hanging.
port_open() {
  # shellcheck disable=SC2016 # $0 belongs to the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

# holder PORT: "name (pid N)" of what listens on PORT, if ss can tell (for other users' processes
# only when run as root).
holder() {
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 |
    sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1 (pid \2)/' || true
}

# serves PID PORT: PID owns the listening socket on PORT (or, without ss, the port answers).
serves() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
  else
    port_open "$2"
  fi
}

# state NAME: "running PID", "starting PID" (ours, alive, not listening on all its ports yet),
# or "stopped".
state() {
  local pid port
  pid="$(live_pid "$1")" || { echo stopped; return 0; }
  for port in $(ports_of "$1"); do
    serves "$pid" "$port" || { echo "starting $pid"; return 0; }
  done
  echo "running $pid"
}

# --- tools and ports checked before anything slow starts ------------------------------------------

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

need_java() {
  local how="install a JDK 17+ (Debian: openjdk-17-jdk-headless)" major
  need java "$how"
  # "17.0.15", "21", or "1.8.0_392" for Java 8.
  major="$(java -version 2>&1 | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1)"
  [[ -z "$major" || "$major" -ge 17 ]] || die "java $major found but Kafka 4 needs 17 or newer: $how"
}

# need_tools NAME...: Java to run Kafka; Maven and Go only for what must be fetched or built.
need_tools() {
  local name
  need timeout "install coreutils"
  need setsid "install util-linux"
  for name in "$@"; do
    case "$name" in
      kafka)
        need_java
        up_to_date kafka || need mvn "install Maven 3.6+ (Debian: maven)"
        ;;
      *) up_to_date "$name" || need go "install Go 1.25+ (Debian: golang-go, if recent enough; or the official Go tarball)" ;;
    esac
  done
}

# check_ports NAME...: the ports of the servers about to start are free. Ours are not running
# (else they would not be about to start), so whatever answers belongs to something else.
check_ports() {
  local name port who
  for name in "$@"; do
    for port in $(ports_of "$name"); do
      port_open "$port" || continue
      who="$(holder "$port")"
      [[ -n "$who" ]] || who="a process of another user (as root, ss -ltnp names it)"
      die "port $port (for $name) is already taken by $who: stop it, or move the stack (STACK_*_PORT)"
    done
  done
}

# --- fetch and build, first run only -----------------------------------------------------------

kafka_inputs() { sha256sum <"$HERE/kafka/pom.xml" | cut -c1-16; }
ferretdb_inputs() {
  { cat "$HERE/ferretdb/main.go" "$HERE/ferretdb/go.mod" "$HERE/ferretdb/go.sum"; echo "tags=$FERRETDB_TAGS"; } |
    sha256sum | cut -c1-16
}
mailpit_inputs() { echo "$MAILPIT_VERSION"; }

stamp_of() { if [[ "$1" == kafka ]]; then echo "$LIBS/.inputs"; else echo "$BIN/.$1.inputs"; fi; }

# up_to_date NAME: NAME's jars or binary exist and were made from today's inputs.
up_to_date() {
  [[ "$(cat "$(stamp_of "$1")" 2>/dev/null)" == "$("$1_inputs")" ]] || return 1
  [[ "$1" == kafka || -x "$BIN/$1" ]]
}

# Each build writes its tool's output to $LOGS/<name>-build.log and moves its result into place
# only when complete, so an interrupted build is redone, never half used. Steps are chained with
# && because build_one calls these in an `if`, where set -e does not apply.
build_kafka() {
  log "kafka: fetching the broker's jars with Maven (first run only)…"
  rm -rf "$LIBS" "$LIBS.tmp" &&
    mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$LOGS/kafka-build.log" 2>&1 &&
    mv "$LIBS.tmp" "$LIBS"
}

build_ferretdb() {
  log "ferretdb: building FerretDB from its Go module (first run only; minutes on a cold Go cache)…"
  # -buildvcs=false: the module sits inside this git repository; its state is none of the binary's business.
  (cd "$HERE/ferretdb" && go build -buildvcs=false -tags "$FERRETDB_TAGS" -o "$BIN/.ferretdb.tmp" .) \
    >"$LOGS/ferretdb-build.log" 2>&1 &&
    mv -f "$BIN/.ferretdb.tmp" "$BIN/ferretdb"
}

build_mailpit() {
  log "mailpit: building Mailpit $MAILPIT_VERSION from its Go module (first run only; minutes on a cold Go cache)…"
  rm -rf "$BIN/.mailpit.tmp" &&
    GOBIN="$BIN/.mailpit.tmp" go install "github.com/axllent/mailpit@$MAILPIT_VERSION" \
      >"$LOGS/mailpit-build.log" 2>&1 &&
    mv -f "$BIN/.mailpit.tmp/mailpit" "$BIN/mailpit" &&
    rm -rf "$BIN/.mailpit.tmp"
}

build_one() {
  local started=$SECONDS
  if ! "build_$1"; then
    tail -n 15 "$LOGS/$1-build.log" | sed 's/^/    /' >&2
    printf '[stack] error: %s: fetch/build failed; see %s\n' "$1" "$LOGS/$1-build.log" >&2
    return 1
  fi
  "$1_inputs" >"$(stamp_of "$1")"
  log "$1: ready ($((SECONDS - started)) s)"
}

# build_missing NAME...: in parallel, so that downloads overlap compiles.
build_missing() {
  local name jobs=() failed=0 job
  for name in "$@"; do
    up_to_date "$name" && continue
    build_one "$name" &
    jobs+=("$!")
  done
  for job in "${jobs[@]}"; do wait "$job" || failed=1; done
  ((failed == 0)) || die "a fetch or build failed (see above); fix it and run up again"
}

# --- start and wait --------------------------------------------------------------------------------

# launch NAME OUTFILE COMMAND...: run COMMAND in a session of its own (setsid), so that neither
# Ctrl-C in this terminal nor closing it reaches the server; stdout and stderr go to OUTFILE.
launch() {
  local name="$1" out="$2" pidfile="$PIDS/$1.pid" tries=0
  shift 2
  rm -f "$pidfile"
  SEEN[$out]="$(size_of "$out")"
  # The inner shell writes its own pid, then becomes the server (exec): the pid file holds the
  # server's pid even if setsid forks (it does when run as a process group leader).
  # shellcheck disable=SC2016 # $0, $$ and $@ belong to the inner shell
  setsid bash -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$out" 2>&1 9>&- &
  STARTED+=("$name")
  until [[ -s "$pidfile" ]]; do
    ((tries++ < 50)) || die "$name: did not start (no pid file after 5 s); see $out"
    sleep 0.1
  done
}

render_kafka_config() {
  local data="$STACK_DIR/kafka/data"
  data="${data//\\/\\\\}" data="${data//|/\\|}" data="${data//&/\\&}" # literal in sed's s|||
  # Through placeholders, so that swapped ports (e.g. 9093 and 9092) are not replaced twice.
  sed -e "s|@LOG_DIRS@|$data|" \
    -e 's|127\.0\.0\.1:9092|127.0.0.1:@KAFKA@|g' -e 's|127\.0\.0\.1:9093|127.0.0.1:@CONTROLLER@|g' \
    -e "s|@KAFKA@|$KAFKA_PORT|g" -e "s|@CONTROLLER@|$CONTROLLER_PORT|g" \
    "$HERE/kafka/server.properties" >"$STACK_DIR/kafka/server.properties"
}

# A new data directory needs a cluster id and its metadata written once: the broker refuses an
# unformatted one. The quorum is fixed by controller.quorum.voters, hence no --standalone.
format_kafka() {
  local data="$STACK_DIR/kafka/data" id
  [[ -f "$data/meta.properties" ]] && return 0
  log "kafka: formatting $data (first run only)…"
  id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka.out" | tail -n 1)"
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$STACK_DIR/kafka/server.properties" \
    >>"$LOGS/kafka.out" 2>&1 || {
    tail -n 20 "$LOGS/kafka.out" | sed 's/^/    /' >&2
    die "kafka: formatting $data failed; see $LOGS/kafka.out"
  }
}

start_kafka() {
  mkdir -p "$STACK_DIR/kafka/data"
  render_kafka_config
  format_kafka
  SEEN[$LOGS/kafka.log]="$(size_of "$LOGS/kafka.log")"
  # kafka.out gets the console: warnings, errors, and what the JVM says before logging starts.
  launch kafka "$LOGS/kafka.out" "${JAVA[@]}" kafka.Kafka "$STACK_DIR/kafka/server.properties"
}

start_ferretdb() {
  mkdir -p "$STACK_DIR/ferretdb/data"
  launch ferretdb "$LOGS/ferretdb.log" \
    "$BIN/ferretdb" -listen "127.0.0.1:$MONGO_PORT" -data "$STACK_DIR/ferretdb/data"
}

start_mailpit() {
  mkdir -p "$STACK_DIR/mailpit"
  launch mailpit "$LOGS/mailpit.log" "$BIN/mailpit" \
    --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
    --smtp-auth-accept-any --smtp-auth-allow-insecure -d "$STACK_DIR/mailpit/mailpit.db"
}

# kafka_answers: the broker answers an ApiVersions request (v0, correlation id 42). An open port
# is only a first sign: the kernel accepts connections before the broker serves them.
kafka_answers() {
  local reply
  # shellcheck disable=SC2016 # $0 belongs to the inner shell
  reply="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
    printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x2a\xff\xff" >&3 &&
    head -c 10 <&3 | od -An -tx1' "$KAFKA_PORT" 2>/dev/null)" || return 1
  reply="${reply//[[:space:]]/}"
  [[ "${reply:8:8}" == 0000002a ]] # size, then our correlation id
}

# kafka_started: the broker logged that it finished starting, since this `up` started it.
kafka_started() { new_lines "$LOGS/kafka.log" | grep -q 'Kafka Server started'; }

kafka_ready() { port_open "$CONTROLLER_PORT" && kafka_answers && kafka_started; }
ferretdb_ready() { port_open "$MONGO_PORT"; }
mailpit_ready() { port_open "$SMTP_PORT" && port_open "$MAILPIT_HTTP_PORT"; }

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

# new_lines FILE: what FILE got since this `up` started its server (all of it if the file rolled
# over meanwhile, or if another `up` started the server).
new_lines() {
  local seen="${SEEN[$1]:-0}"
  (($(size_of "$1") >= seen)) || seen=0
  tail -c +"$((seen + 1))" "$1" 2>/dev/null || true
}

# show_tail FILE: the last new lines of FILE, shortened (Kafka lists partitions by the hundred).
show_tail() {
  local lines
  lines="$(new_lines "$1" | tail -n "$2" | cut -c1-300 | sed 's/^/    /')"
  [[ -n "$lines" ]] || return 0
  log "last lines of $1:" >&2
  printf '%s\n' "$lines" >&2
}

# fail_start NAME WHY: what the server said while starting, then the error.
fail_start() {
  show_tail "$LOGS/$1.log" 20
  if [[ "$1" == kafka ]]; then show_tail "$LOGS/kafka.out" 10; fi
  if [[ "$1" == kafka ]]; then die "kafka $2; see $LOGS/kafka.log and kafka.out"; fi
  die "$1 $2; see $LOGS/$1.log"
}

# await NAME: until NAME is ready, its process is gone, or its time is up.
await() {
  local name="$1" seconds
  seconds="$(wait_of "$1")"
  local deadline=$((SECONDS + seconds))
  until "${name}_ready"; do
    live_pid "$name" >/dev/null || fail_start "$name" "exited while starting"
    ((SECONDS < deadline)) || fail_start "$name" "did not come up within $seconds s"
    sleep 0.25
  done
}

# The topics exist, with their partition counts, before any service or test uses them.
create_topics() {
  if [[ ! -f "$REPO/shared/kafka_topics.py" ]]; then
    log "topics: shared/kafka_topics.py does not exist yet; not creating topics"
    return 0
  fi
  if [[ ! -x "$PYTHON" ]]; then
    log "topics: no Python at $PYTHON (make venv, or set PYTHON); not creating topics"
    return 0
  fi
  (cd "$REPO" && KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" "$PYTHON" -m shared.kafka_topics) 2>&1 |
    sed 's/^/[stack] topics: /' || die "creating the topics failed (output above); the servers keep running"
}

# --- stop -------------------------------------------------------------------------------------------

# stop_servers NAME...: SIGTERM to every copy of ours, up to STOP_WAIT seconds for all of them
# together to exit, then SIGKILL for what is left.
stop_servers() {
  local name pid entry targets=() left deadline=$((SECONDS + STOP_WAIT))
  for name in "$@"; do
    for pid in $(find_ours "$name"); do
      targets+=("$name:$pid")
      kill -TERM "$pid" 2>/dev/null || true
    done
  done
  while :; do
    left=()
    for entry in "${targets[@]}"; do
      if ours "${entry#*:}" "${entry%%:*}"; then left+=("$entry"); fi
    done
    ((${#left[@]} > 0 && SECONDS < deadline)) || break
    sleep 0.2
  done
  for entry in "${left[@]}"; do
    log "${entry%%:*}: still running after $STOP_WAIT s (pid ${entry#*:}); killing it"
    kill -KILL "${entry#*:}" 2>/dev/null || true
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
  for entry in "${targets[@]}"; do log "${entry%%:*}: stopped (pid ${entry#*:})"; done
}

# If `up` fails half-way, stop what it started, so that a failed `up` leaves nothing behind.
rollback() {
  local code=$?
  if ((code != 0 && ${#STARTED[@]} > 0)); then
    log "stopping what this run started: ${STARTED[*]}" >&2
    stop_servers "${STARTED[@]}" >&2
  fi
}

# --- commands -------------------------------------------------------------------------------------

# One `up` or `down` at a time (say, two test sessions starting together); fd 9 holds the lock and
# is closed in the servers, or they would hold it for as long as they run.
lock() {
  mkdir -p "$STACK_DIR"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$STACK_DIR/.lock"
  flock -n 9 && return 0
  log "waiting for another up/down of this stack to finish…"
  flock -w 900 9 || die "another up/down of this stack has held $STACK_DIR/.lock for 15 minutes"
}

up() {
  local name st pid todo=() waiting=() began=$SECONDS
  lock
  mkdir -p "$BIN" "$LOGS" "$PIDS"
  for name in "${SERVERS[@]}"; do
    read -r st pid <<<"$(state "$name")"
    case "$st" in
      running) log "$name: already running (pid $pid)" ;;
      starting) log "$name: already starting (pid $pid); waiting for it" ;;
      stopped) todo+=("$name") ;;
    esac
    if [[ "$st" == stopped ]]; then rm -f "$PIDS/$name.pid"; else echo "$pid" >"$PIDS/$name.pid"; fi
    [[ "$st" == running ]] || waiting+=("$name")
  done
  if ((${#todo[@]} > 0)); then
    need_tools "${todo[@]}"
    check_ports "${todo[@]}"
    trap rollback EXIT
    trap 'exit 130' INT # bash skips the EXIT trap when a signal kills it, so exit instead
    trap 'exit 143' TERM HUP
    build_missing "${todo[@]}"
    # Kafka first: it takes longest, and the others start meanwhile.
    for name in "${todo[@]}"; do
      log "$name: starting…"
      "start_$name"
    done
  fi
  for name in "${waiting[@]}"; do await "$name"; done
  # The servers work from here on: a failure to create the topics leaves them running, to debug it.
  trap - EXIT INT TERM HUP
  create_topics
  status
  log "up in $((SECONDS - began)) s"
}

# down [NAME...]: the named servers, or all of them.
down() {
  local name names=("$@")
  ((${#names[@]} > 0)) || names=("${SERVERS[@]}")
  for name in "${names[@]}"; do
    [[ " ${SERVERS[*]} " == *" $name "* ]] || die "no server named $name (one of: ${SERVERS[*]})"
  done
  lock
  for name in "${names[@]}"; do
    [[ -n "$(find_ours "$name")" ]] || log "$name: not running"
  done
  stop_servers "${names[@]}"
  for name in "${names[@]}"; do
    [[ -z "$(find_ours "$name")" ]] || die "$name is still running: $(find_ours "$name" | tr '\n' ' ')"
  done
}

status() {
  local name st pid code=0
  for name in "${SERVERS[@]}"; do
    read -r st pid <<<"$(state "$name")"
    case "$st" in
      running) log "$(printf '%-9s running   pid %-7s %s' "$name" "$pid" "$(address_of "$name")")" ;;
      starting) log "$(printf '%-9s starting  pid %-7s not listening on all its ports yet; see %s' "$name" "$pid" "$LOGS/$name.log")" ;;
      *) log "$(printf '%-9s stopped' "$name")" ;;
    esac
    [[ "$st" == running ]] || code=3
  done
  return "$code"
}

case "${1:-}" in
  up) up ;;
  down) down "${@:2}" ;;
  status) status ;;
  *)
    echo "usage: $0 up|down [NAME...]|status" >&2
    exit 2
    ;;
esac

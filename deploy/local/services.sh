#!/usr/bin/env bash
# Runs the three services in the background for `make up` / `make down`, with the settings of
# deploy/local/dev.env and the random secrets of .stack/dev-secrets.env (made on first run).
# Logs in .stack/logs/<service>.log, pids in .stack/pids/<service>.pid.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO/.stack}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SERVICES=(intake analytics notifier)
declare -A PORTS=([intake]="${INTAKE_PORT:-8000}" [analytics]="${ANALYTICS_PORT:-8001}" [notifier]="${NOTIFIER_PORT:-8002}")
READY_SECONDS=90
DEV_SECRETS="$STACK_DIR/dev-secrets.env"

log() { printf '[services] %s\n' "$*"; }
pidfile() { printf '%s/pids/%s.pid' "$STACK_DIR" "$1"; }

running() {
  local pid
  pid="$(cat "$(pidfile "$1")" 2>/dev/null)" || return 1
  kill -0 "$pid" 2>/dev/null
}

wait_ready() {
  local name="$1" url="http://127.0.0.1:${PORTS[$1]}/readyz" waited=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if ! running "$name"; then
      log "$name exited while starting; last lines of $STACK_DIR/logs/$name.log:"
      tail -n 20 "$STACK_DIR/logs/$name.log" >&2
      exit 1
    fi
    if (( waited >= READY_SECONDS * 2 )); then
      log "$name not ready after ${READY_SECONDS}s; see $STACK_DIR/logs/$name.log"
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
}

secrets() {
  "$PYTHON" "$REPO/deploy/local/dev_secrets.py" local "$DEV_SECRETS" >/dev/null
}

up() {
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids"
  secrets
  set -a
  # shellcheck source=deploy/local/dev.env
  . "$REPO/deploy/local/dev.env"
  # shellcheck disable=SC1090
  . "$DEV_SECRETS"
  set +a
  for name in "${SERVICES[@]}"; do
    if running "$name"; then
      log "$name already running (pid $(cat "$(pidfile "$name")"))"
      continue
    fi
    # The background command is the service itself (no `cd &&` list, no setsid, which forks
    # under job control), so that $! is the pid to stop.
    (
      cd "$REPO"
      nohup "$PYTHON" -m "services.$name" >>"$STACK_DIR/logs/$name.log" 2>&1 &
      echo $! >"$(pidfile "$name")"
    )
  done
  for name in "${SERVICES[@]}"; do
    wait_ready "$name"
    log "$name ready on http://127.0.0.1:${PORTS[$name]}"
  done
}

down() {
  local name pid waited
  for name in "${SERVICES[@]}"; do
    if ! running "$name"; then
      rm -f "$(pidfile "$name")"
      continue
    fi
    pid="$(cat "$(pidfile "$name")")"
    kill -TERM "$pid" 2>/dev/null || true
    waited=0
    while kill -0 "$pid" 2>/dev/null && (( waited < 30 )); do sleep 0.5; waited=$((waited + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(pidfile "$name")"
    log "$name stopped"
  done
}

status() {
  local name code=0
  for name in "${SERVICES[@]}"; do
    if running "$name"; then
      log "$name running (pid $(cat "$(pidfile "$name")"), http://127.0.0.1:${PORTS[$name]})"
    else
      log "$name stopped"
      code=3
    fi
  done
  return "$code"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  secrets) secrets; log "development secrets in $DEV_SECRETS" ;;
  *) echo "usage: $0 up|down|status|secrets" >&2; exit 2 ;;
esac

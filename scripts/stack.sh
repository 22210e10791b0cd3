#!/usr/bin/env bash
# The local stack: Airflow 3 (api-server, scheduler, dag-processor, triggerer on
# LocalExecutor) and the job API under gunicorn, all on 127.0.0.1.
#   scripts/stack.sh up     start what is not running, wait until healthy
#   scripts/stack.sh down   stop exactly what `up` started (pid files), nothing else
#   scripts/stack.sh status
set -euo pipefail
source "$(dirname "$0")/env.sh"
VAR_DIR="${TRANSCODE_VAR_DIR:-$TRANSCODE_HOME/var}"
RUN_DIR="$VAR_DIR/run"
LOG_DIR="$VAR_DIR/log"
# Ports can be moved (tests run a private stack beside a developer's one).
AIRFLOW_PORT="${AIRFLOW__API__PORT:-8080}"
API_BIND="${TRANSCODE_API_BIND:-127.0.0.1:5000}"
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
SECRETS="$AIRFLOW_HOME/stack.env"
mkdir -p "$RUN_DIR" "$LOG_DIR"

# STACK_COMPONENTS narrows the set, e.g. "api-server scheduler dag-processor triggerer".
read -r -a components <<< "${STACK_COMPONENTS:-api-server scheduler dag-processor triggerer api}"

command_for() {
  case "$1" in
    api) echo "gunicorn --config $TRANSCODE_HOME/gunicorn.conf.py --bind $API_BIND api.wsgi:app" ;;
    *) echo "airflow $1" ;;
  esac
}

running() {
  local pidfile="$RUN_DIR/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

ensure_secrets() {
  # Every Airflow component must share the JWT secret: the scheduler signs
  # the tokens that task processes present to the api-server.
  if [ ! -f "$SECRETS" ]; then
    umask 077
    {
      echo "AIRFLOW__API_AUTH__JWT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
      echo "AIRFLOW__API__SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    } > "$SECRETS"
  fi
  set -a; source "$SECRETS"; set +a
}

wait_http() {
  local url=$1 what=$2 deadline=$((SECONDS + ${3:-120}))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if ((SECONDS > deadline)); then
      echo "$what did not become healthy at $url; see $LOG_DIR" >&2
      return 1
    fi
    sleep 1
  done
}

up() {
  ensure_secrets
  "$TRANSCODE_HOME/scripts/setup_airflow.sh"
  for c in "${components[@]}"; do
    if running "$c"; then continue; fi
    # setsid: each component leads its own process group, so `down` can stop
    # it with all its children and touch nothing else.
    setsid bash -c "exec $(command_for "$c")" >>"$LOG_DIR/$c.log" 2>&1 < /dev/null &
    echo $! > "$RUN_DIR/$c.pid"
  done
  wait_http "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" "Airflow api-server" 180
  if [[ " ${components[*]} " == *" api "* ]]; then
    wait_http "http://$API_BIND/healthz" "job API" 60
  fi
  echo "stack up: Airflow UI http://127.0.0.1:$AIRFLOW_PORT (login admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated), API http://$API_BIND"
}

down() {
  for c in "${components[@]}"; do
    local pidfile="$RUN_DIR/$c.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
    fi
  done
  for c in "${components[@]}"; do
    local pidfile="$RUN_DIR/$c.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "stack down"
}

status() {
  for c in "${components[@]}"; do
    if running "$c"; then echo "$c: running (pid $(cat "$RUN_DIR/$c.pid"))"; else echo "$c: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

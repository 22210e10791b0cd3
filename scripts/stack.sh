#!/usr/bin/env bash
# The local stack: Airflow 3 (api-server, scheduler, dag-processor, triggerer on
# LocalExecutor), the job API under gunicorn and NGINX in front of it (HTTPS:
# API, signed HLS, player; HTTP: 301 to HTTPS), all on 127.0.0.1.
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
HTTPS_PORT="${TRANSCODE_HTTPS_PORT:-8443}"
HTTP_PORT="${TRANSCODE_HTTP_PORT:-8081}"
export TRANSCODE_HTTPS_PORT="$HTTPS_PORT" TRANSCODE_HTTP_PORT="$HTTP_PORT" TRANSCODE_API_BIND="$API_BIND"
export TRANSCODE_PUBLIC_BASE_URL="${TRANSCODE_PUBLIC_BASE_URL:-https://127.0.0.1:$HTTPS_PORT}"
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
SECRETS="$AIRFLOW_HOME/stack.env"
mkdir -p "$RUN_DIR" "$LOG_DIR"

# STACK_COMPONENTS narrows the set, e.g. "api-server scheduler dag-processor triggerer".
read -r -a components <<< "${STACK_COMPONENTS:-api-server scheduler dag-processor triggerer api nginx}"
if [[ " ${components[*]} " == *" nginx "* ]]; then
  # NGINX is the API's only client: it may set X-Forwarded-For/-Proto.
  export TRANSCODE_TRUSTED_PROXIES="${TRANSCODE_TRUSTED_PROXIES:-1}"
fi
NGINX_CONF="$VAR_DIR/nginx/nginx.conf"

command_for() {
  case "$1" in
    api) echo "gunicorn --config $TRANSCODE_HOME/gunicorn.conf.py --bind $API_BIND api.wsgi:app" ;;
    nginx) echo "nginx -c $NGINX_CONF -e $VAR_DIR/nginx/log/nginx-error.log -g 'daemon off;'" ;;
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
  # The key of the signed /hls/ URLs: from the secrets provider when one is
  # configured; for a plain local run, generated once into var/ (0600).
  if [ -z "${TRANSCODE_HLS_SIGNING_SECRET:-}" ] && [ "${TRANSCODE_SECRETS_PROVIDER:-env}" = env ]; then
    local hls_env="$VAR_DIR/hls_signing.env"
    if [ ! -f "$hls_env" ]; then
      (umask 077; echo "TRANSCODE_HLS_SIGNING_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" > "$hls_env")
    fi
    set -a; source "$hls_env"; set +a
  fi
}

render_nginx() {
  # Local CA + leaf (var/tls), vendored hls.js, config rendered 0600.
  local out
  out=$(cd "$TRANSCODE_HOME" && python -m nginx.render local)
  CA_PATH=$(sed -n 's/^ca=//p' <<< "$out")
  nginx -t -q -c "$NGINX_CONF" -e "$VAR_DIR/nginx/log/nginx-error.log"
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
  CA_PATH=""
  if [[ " ${components[*]} " == *" nginx "* ]]; then render_nginx; fi
  for c in "${components[@]}"; do
    if running "$c"; then continue; fi
    # setsid: each component leads its own process group, so `down` can stop
    # it with all its children and touch nothing else.
    setsid bash -c "exec $(command_for "$c")" >>"$LOG_DIR/$c.log" 2>&1 < /dev/null &
    echo $! > "$RUN_DIR/$c.pid"
  done
  if [[ " ${components[*]} " == *" api-server "* ]]; then
    wait_http "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" "Airflow api-server" 180
  fi
  if [[ " ${components[*]} " == *" api "* ]]; then
    wait_http "http://$API_BIND/healthz" "job API" 60
  fi
  if [[ " ${components[*]} " == *" nginx "* ]]; then
    # Any TLS answer will do: /healthz is the API's, which may not be part of this stack.
    local deadline=$((SECONDS + 60))
    until curl -sS -o /dev/null --cacert "$CA_PATH" "https://127.0.0.1:$HTTPS_PORT/" 2>/dev/null; do
      if ! running nginx || ((SECONDS > deadline)); then
        echo "NGINX did not start; see $VAR_DIR/nginx/log" >&2
        return 1
      fi
      sleep 1
    done
  fi
  echo "stack up: Airflow UI http://127.0.0.1:$AIRFLOW_PORT (login admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated), API http://$API_BIND"
  if [[ " ${components[*]} " == *" nginx "* ]]; then
    echo "HTTPS https://127.0.0.1:$HTTPS_PORT (API, signed HLS, player at /watch/<job_id>, upload at /upload; http://127.0.0.1:$HTTP_PORT redirects)"
    echo "local CA: $CA_PATH (trust it: curl --cacert $CA_PATH, or import it into the browser)"
  fi
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

reload_nginx() {
  # After a certificate change (scripts/setup_ssl): re-render, check, reload
  # without dropping connections. A stopped NGINX picks it up at its next start.
  ensure_secrets
  render_nginx
  if running nginx; then
    kill -HUP "$(cat "$RUN_DIR/nginx.pid")"
    echo "nginx reloaded"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  reload-nginx) reload_nginx ;;
  *) echo "usage: $0 up|down|status|reload-nginx" >&2; exit 2 ;;
esac

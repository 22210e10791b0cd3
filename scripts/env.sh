# Environment shared by the Makefile targets and scripts: source it.
TRANSCODE_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TRANSCODE_HOME
export AIRFLOW_HOME="${AIRFLOW_HOME:-$TRANSCODE_HOME/var/airflow}"
export AIRFLOW_CONFIG="${AIRFLOW_CONFIG:-$TRANSCODE_HOME/airflow.cfg}"
export PATH="$TRANSCODE_HOME/.venv/bin:$PATH"
export PYTHONPATH="$TRANSCODE_HOME:$TRANSCODE_HOME/plugins${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$AIRFLOW_HOME"

"""Run one DAG of dags/ in-process with dag.test() and print a JSON summary.

Used by the end-to-end tests of the operations DAGs and by operators who
want a one-off run without a scheduler (e.g. a retention dry run):

    python scripts/run_dag.py apply_retention --conf '{"dry_run": true}'
    python scripts/run_dag.py drill_disaster_recovery

The last line of output is the summary: the run's state, every task's
state and try number, the tasks' return values and the error lines logged
while it ran. Exit status 0 when the run succeeded, 1 when it failed.
The DAG id must match its file name under dags/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from typing import Any

from include.config import PROJECT_ROOT, get_settings


class ErrorCollector(logging.Handler):
    """Keeps ERROR lines (and their exceptions) logged during the run."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # pragma: no cover - a malformed log call
            line = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        self.lines.append(line[:4000])


def load_dag(dag_id: str) -> Any:
    path = PROJECT_ROOT / "dags" / f"{dag_id}.py"
    if not path.is_file():
        raise SystemExit(f"no DAG file {path}")
    spec = importlib.util.spec_from_file_location(f"{dag_id}_dag", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, dag_id)()
    if dag.dag_id != dag_id:
        raise SystemExit(f"{path} defines {dag.dag_id!r}, not {dag_id!r}")
    return dag


def task_summary(dag_run: Any) -> dict[str, dict[str, Any]]:
    """State and try number of every task instance (mapped ones as task[index])."""
    tasks = {}
    for ti in dag_run.get_task_instances():
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        tasks[name] = {"state": str(ti.state), "try_number": ti.try_number}
    return tasks


def return_values(dag_run: Any) -> dict[str, Any]:
    """What each task returned (its ``return_value`` XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    values: dict[str, Any] = {}
    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")
        for row in session.scalars(query):
            name = row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"
            values[name] = XComModel.deserialize_value(row)
    return values


def run(dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    collector = ErrorCollector()
    # On the project's own loggers: Airflow reconfigures the root logger
    # for each task it runs.
    watched = [logging.getLogger(name) for name in ("include", "transcode_flow")]
    for logger in watched:
        logger.addHandler(collector)
    started = time.monotonic()
    dag = load_dag(dag_id)
    dag_run = dag.test(run_conf=conf)
    wall = time.monotonic() - started
    for logger in watched:
        logger.removeHandler(collector)
    return {
        "dag_id": dag_id,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "conf": conf,
        "tasks": task_summary(dag_run),
        "returns": return_values(dag_run),
        "errors": collector.lines,
        "wall_seconds": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}", help="run conf as a JSON object")
    args = parser.parse_args(argv)
    try:
        conf = json.loads(args.conf)
    except json.JSONDecodeError as exc:
        print(f"--conf is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(conf, dict):
        print("--conf must be a JSON object", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    summary = run(args.dag_id, conf)
    print(json.dumps(summary, default=str))
    return 0 if summary["state"] == "success" else 1


def exit_now(code: int) -> None:
    """Exit without the interpreter teardown.

    dag.test() leaves its in-process Execution API loop and comms threads
    running; their teardown costs ~2 s and does nothing we need (every
    database session is committed and closed by now).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    get_settings()
    exit_now(main())

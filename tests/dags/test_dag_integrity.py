"""DAG integrity: every file in dags/ parses in a real Airflow 3.3 DagBag and
follows the project's rules; include/ stays free of Airflow.

Nothing is mocked. Airflow 3.3's DagBag lives in
``airflow.dag_processing.dagbag`` and has no ``include_examples`` argument
any more: examples come from the ``load_examples`` setting (False in this
project's airflow.cfg) and are not part of a DagBag built from a folder.
"""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
INCLUDE_DIR = REPO / "include"


def _dag_files() -> list[Path]:
    return sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)


@pytest.fixture(scope="module")
def transcode_dag(dagbag):
    assert "transcode_video" in dagbag.dags, sorted(dagbag.dags)
    return dagbag.dags["transcode_video"]


def test_every_dag_file_imports_cleanly(dagbag) -> None:
    assert dagbag.import_errors == {}, "\n\n".join(f"{k}:\n{v}" for k, v in dagbag.import_errors.items())
    assert _dag_files(), "no DAG files found"
    loaded = {Path(dag.fileloc).resolve() for dag in dagbag.dags.values()}
    for path in _dag_files():
        assert path.resolve() in loaded, f"{path.name} defines no DAG (helpers belong in include/ or plugins/)"


def test_every_dag_follows_the_house_rules(dagbag) -> None:
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id}: doc_md missing"
        assert dag.tags, f"{dag_id}: tags missing"
        assert dag.catchup is False, f"{dag_id}: catchup must be False"
        args = dag.default_args or {}
        assert args.get("retries", 0) >= 2, f"{dag_id}: default retries {args.get('retries')} < 2"
        assert args.get("retry_exponential_backoff"), f"{dag_id}: retries need exponential backoff"
        assert args.get("retry_delay", timedelta(0)) > timedelta(0), f"{dag_id}: retry_delay missing"
        if args.get("max_retry_delay") is not None:
            assert args["max_retry_delay"] >= args["retry_delay"]


def test_transcode_video_tasks(transcode_dag) -> None:
    tasks = {t.task_id: t for t in transcode_dag.tasks}
    for task_id in ("probe", "plan", "transcode_cpu", "transcode_gpu", "segment", "upload", "finalize"):
        assert task_id in tasks, f"missing task {task_id}; have {sorted(tasks)}"
        task = tasks[task_id]
        assert task.on_failure_callback, f"{task_id}: on_failure_callback not set"
        assert task.retries >= 2 and task.retry_exponential_backoff, task_id
        assert task.execution_timeout is not None, f"{task_id}: needs an execution_timeout"
    assert tasks["transcode_cpu"].pool == "transcode_cpu"
    assert tasks["transcode_gpu"].pool == "transcode_gpu"
    assert tasks["transcode_gpu"].queue == "gpu"
    assert tasks["transcode_cpu"].queue != "gpu"
    assert tasks["segment"].trigger_rule == "none_failed"  # runs when the GPU list is empty (skipped)


def test_transcode_video_wiring(transcode_dag) -> None:
    tasks = {t.task_id: t for t in transcode_dag.tasks}

    def downstream(task_id: str) -> set[str]:
        return set(tasks[task_id].downstream_task_ids)

    assert "plan" in downstream("probe")
    assert {"cpu_units", "gpu_units"} <= downstream("plan")
    assert "transcode_cpu" in downstream("cpu_units")
    assert "transcode_gpu" in downstream("gpu_units")
    assert "segment" in downstream("transcode_cpu") and "segment" in downstream("transcode_gpu")
    assert "upload" in downstream("segment")
    assert "finalize" in downstream("upload")
    assert transcode_dag.schedule is None  # triggered per job, never on a timetable


# --------------------------------------------------------------------------
# static checks on the source
# --------------------------------------------------------------------------

FORBIDDEN_MODULES = {"subprocess", "shlex", "ctypes", "multiprocessing", "pty"}
FORBIDDEN_ATTRS = {"system", "popen", "Popen", "spawn", "execv", "execvp", "run_ffmpeg", "unit_command"}


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _strings_outside_docstring(tree: ast.Module) -> list[str]:
    docstring = ast.get_docstring(tree, clean=False)
    return [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != docstring
    ]  # fmt: skip


@pytest.mark.parametrize("path", _dag_files(), ids=lambda p: p.name)
def test_dag_files_hold_no_media_or_process_logic(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imports = _imports(tree)
    for name in imports:
        assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
        assert not name.startswith("include.media"), f"{path.name} imports {name}: call include.pipeline instead"
    for text in _strings_outside_docstring(tree):
        assert not re.search(r"ffmpeg|ffprobe", text, re.I), f"{path.name} builds media commands: {text!r}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_ATTRS, f"{path.name} uses .{node.attr}"
        if isinstance(node, ast.Name):
            assert node.id not in {"subprocess", "os"}, f"{path.name} uses {node.id}"


def test_transcode_video_only_uses_include_pipeline() -> None:
    """The DAG wires steps from include.pipeline; settings only for its retry count."""
    tree = ast.parse((DAGS_DIR / "transcode_video.py").read_text())
    project = {n for n in _imports(tree) if n.split(".")[0] in {"include", "security", "api"}}
    assert project == {"include", "include.pipeline", "include.config", "include.config.get_settings"}, project


def test_include_never_imports_airflow() -> None:
    files = sorted(INCLUDE_DIR.rglob("*.py"))
    assert files
    offenders = []
    pattern = re.compile(r"^\s*(import\s+airflow\b|from\s+airflow\b)", re.M)
    for path in files:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        via_ast = [n for n in _imports(tree) if n == "airflow" or n.startswith("airflow.")]
        via_text = pattern.findall(source)
        dynamic = [
            node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str) and node.args[0].value.split(".")[0] == "airflow"
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {"import_module", "__import__"}
        ]  # fmt: skip
        if via_ast or via_text or dynamic:
            offenders.append(f"{path.relative_to(REPO)}: {via_ast or via_text or dynamic}")
    assert offenders == [], "include/ must stay free of Airflow:\n" + "\n".join(offenders)

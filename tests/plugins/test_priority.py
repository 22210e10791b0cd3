"""Job priority travels in the run id and becomes the tasks' priority_weight."""

from transcode_flow.priority import DEFAULT_PRIORITY, JobPriorityWeight, priority_from_run_id

from include.pipeline import transcode_run_id


def test_run_id_round_trips_every_priority() -> None:
    for priority in range(1, 11):
        assert priority_from_run_id(transcode_run_id("ab" * 16, priority)) == priority


def test_runs_started_by_hand_get_the_default() -> None:
    for run_id in ("manual__2026-12-04T16:35:35+00:00", "job_xyz_p09", "", None):
        assert priority_from_run_id(run_id) == DEFAULT_PRIORITY


def test_strategy_reads_the_task_instances_run_id() -> None:
    class DetachedTI:  # what the scheduler hands get_weight(): only the run id is known
        run_id = transcode_run_id("cd" * 16, 9)

    assert JobPriorityWeight().get_weight(DetachedTI()) == 9

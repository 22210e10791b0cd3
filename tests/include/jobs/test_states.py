"""The job state machine table."""

from __future__ import annotations

import pytest

from include.errors import IllegalTransition
from include.jobs.states import FINAL, TRANSITIONS, JobStatus, allowed_next, check_transition

S = JobStatus

LEGAL = [
    (S.PENDING, S.QUEUED),
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELLED),
    (S.QUEUED, S.PROCESSING),
    (S.QUEUED, S.PENDING),
    (S.QUEUED, S.FAILED),
    (S.QUEUED, S.CANCELLED),
    (S.PROCESSING, S.PROCESSING),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.CANCELLED),
    (S.FAILED, S.PROCESSING),
    (S.COMPLETED, S.PROCESSING),
]

ILLEGAL = [
    (S.PENDING, S.PENDING),
    (S.PENDING, S.COMPLETED),
    (S.QUEUED, S.QUEUED),
    (S.QUEUED, S.COMPLETED),
    (S.PROCESSING, S.PENDING),
    (S.PROCESSING, S.QUEUED),
    (S.COMPLETED, S.FAILED),
    (S.COMPLETED, S.CANCELLED),
    (S.COMPLETED, S.PENDING),
    (S.FAILED, S.COMPLETED),
    (S.FAILED, S.QUEUED),
    (S.CANCELLED, S.PROCESSING),
    (S.CANCELLED, S.PENDING),
    (S.CANCELLED, S.CANCELLED),
]


def test_values_are_the_api_contract() -> None:
    assert [s.value for s in JobStatus] == [
        "pending", "queued", "processing", "completed", "failed", "cancelled",
    ]
    assert FINAL == {S.COMPLETED, S.FAILED, S.CANCELLED}


def test_table_covers_every_status_and_legal_list_is_complete() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts} == set(LEGAL)


@pytest.mark.parametrize(("current", "new"), LEGAL, ids=lambda s: s.value)
def test_legal_transitions_pass(current: JobStatus, new: JobStatus) -> None:
    check_transition(current, new)
    check_transition(current.value, new.value)  # plain strings from the DB work too


@pytest.mark.parametrize(("current", "new"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transitions_raise(current: JobStatus, new: JobStatus) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new)
    message = str(info.value)
    assert repr(current.value) in message and repr(new.value) in message


def test_cancelled_is_terminal_and_says_so() -> None:
    assert allowed_next("cancelled") == frozenset()
    with pytest.raises(IllegalTransition, match="none"):
        check_transition("cancelled", "processing")


def test_unknown_status_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown job status 'done'"):
        check_transition("pending", "done")

"""One real delivery edge per test module: NGINX from the rendered local
config + the job API under gunicorn, on free ports, with a finished job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.states import JobStatus
from security.api_keys import create_api_key
from tests.delivery.edge import Edge, make_ladder, start_edge

JOB = "0123456789abcdef0123456789abcdef"
OTHER_JOB = "fedcba9876543210fedcba9876543210"


@dataclass
class Delivery:
    edge: Edge
    job: str
    api_key: str


def _completed_job(edge: Edge, owner: str) -> str:
    with session_scope(f"sqlite:///{edge.root / 'api.db'}") as session:
        job = repository.create_job(session, source_name="clip.mp4", owner_key_id=owner, priority=5)
        job_id = job.id
        repository.transition(session, job_id, JobStatus.PROCESSING)
        repository.set_outputs(session, job_id, {
            "master_key": f"processed/{job_id}/hls/master.m3u8",
            "poster_key": f"processed/{job_id}/poster.jpg",
            "duration_s": 12.0,
            "renditions": [{"name": "v0", "width": 640, "height": 360, "bitrate_kbps": 800},
                           {"name": "v1", "width": 320, "height": 180, "bitrate_kbps": 250}],
        })  # fmt: skip
        repository.transition(session, job_id, JobStatus.COMPLETED)
    return job_id


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivery]:
    root = tmp_path_factory.mktemp("edge")
    edge = start_edge(root, api_burst=1000, api_rate="1000r/s")
    try:
        with session_scope(f"sqlite:///{root / 'api.db'}") as session:
            row, key = create_api_key(session, "delivery-tests")
            owner = row.id
        job = _completed_job(edge, owner)
        make_ladder(edge.storage / "processed" / job)
        for other in (JOB, OTHER_JOB):
            make_ladder(edge.storage / "processed" / other, seconds=4)
        yield Delivery(edge=edge, job=job, api_key=key)
    finally:
        edge.stop()

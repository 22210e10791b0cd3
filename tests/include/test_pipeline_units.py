"""How a ladder is split into encode units, and the names units and sources get.

Pure functions of include.pipeline on real ladders from plan_ladder; no
database, storage or ffmpeg is involved, and nothing is mocked.
"""

from __future__ import annotations

import uuid

import pytest

from include.media.encoders import CPU_ENCODER
from include.media.ladder import Rendition, plan_ladder
from include.pipeline import AUDIO, pack_units, source_key, unit_label, units_for

LADDER_1080 = plan_ladder(1920, 1080, 25.0, None)
PIXELS_1080 = 1920 * 1080


def _names(groups: list[list[Rendition]]) -> list[list[str]]:
    return [[r.name for r in group] for group in groups]


def _flatten(groups: list[list[Rendition]]) -> list[Rendition]:
    return [r for group in groups for r in group]


def test_one_unit_holds_the_whole_ladder_best_first() -> None:
    groups = pack_units(LADDER_1080, 1, PIXELS_1080)
    assert _names(groups) == [["1080p", "720p", "540p", "432p", "360p", "234p"]]


@pytest.mark.parametrize("units", [0, -3])
def test_fewer_than_one_unit_means_one(units: int) -> None:
    assert len(pack_units(LADDER_1080, units, PIXELS_1080)) == 1


def test_two_units_balance_the_1080p_rung_against_the_rest() -> None:
    groups = pack_units(LADDER_1080, 2, PIXELS_1080)
    assert _names(groups) == [["1080p"], ["720p", "540p", "432p", "360p", "234p"]]

    def cost(group: list[Rendition]) -> float:
        return PIXELS_1080 * 0.2 + sum(r.width * r.height for r in group)

    a, b = (cost(g) for g in groups)
    assert abs(a - b) / max(a, b) < 0.05  # balanced to within 5 %


@pytest.mark.parametrize("units", [6, 7, 64])
def test_enough_units_gives_one_per_rendition(units: int) -> None:
    groups = pack_units(LADDER_1080, units, PIXELS_1080)
    assert _names(groups) == [[r.name] for r in LADDER_1080]


@pytest.mark.parametrize("units", [1, 2, 3, 4, 5, 6])
def test_every_rendition_is_in_exactly_one_unit(units: int) -> None:
    groups = pack_units(LADDER_1080, units, PIXELS_1080)
    assert len(groups) == min(units, len(LADDER_1080))
    assert all(groups)
    assert sorted(_flatten(groups), key=lambda r: r.name) == sorted(LADDER_1080, key=lambda r: r.name)
    for group in groups:
        areas = [r.width * r.height for r in group]
        assert areas == sorted(areas, reverse=True)


def test_portrait_and_small_ladders() -> None:
    portrait = plan_ladder(1080, 1920, 30.0, None)
    assert _names(pack_units(portrait, 2, 1080 * 1920)) == [["1080p"], ["720p", "540p", "432p", "360p", "234p"]]
    tiny = plan_ladder(320, 180, 25.0, None)
    assert _names(pack_units(tiny, 4, 320 * 180)) == [["180p"]]


def _unit(names: list[str], audio: bool, encoder: str = CPU_ENCODER, uid: str = "cpu-0") -> dict:
    by_name = {r.name: r.to_dict() for r in LADDER_1080}
    return {"id": uid, "encoder": encoder, "renditions": [by_name[n] for n in names], "audio": audio}


def test_unit_label() -> None:
    assert unit_label(_unit(["1080p"], False)) == "1080p"
    assert unit_label(_unit(["720p", "540p", "432p"], True)) == "720p+540p+432p+audio"
    assert unit_label(_unit([], True)) == AUDIO == "audio"


def test_units_for_splits_the_plan_by_pool() -> None:
    cpu = _unit(["720p", "360p"], True, uid="cpu-0")
    gpu = [_unit(["1080p"], False, "h264_nvenc", "gpu-0"), _unit(["540p"], False, "h264_nvenc", "gpu-1")]
    plan = {"units": [gpu[0], cpu, gpu[1]]}
    assert units_for(plan, gpu=False) == [cpu]
    assert units_for(plan, gpu=True) == gpu
    assert units_for({"units": [cpu]}, gpu=True) == []


JOB = "0b7f6c1e-2a4d-4d3b-9a53-1c2e3f4a5b6c"


@pytest.mark.parametrize(
    "filename",
    [
        "holiday.mp4",
        "../../etc/passwd",
        "..\\..\\boot.ini",
        "....//....//x.mov",
        "..%2f..%2fsecret.mkv",
        "a/b/../../c.mp4",
        "clip..final...mp4",
        "..",
        "",
        "/",
        "视频.mp4",
        "\x00../x.mp4",
        "x" * 500 + ".mp4",
    ],
)
def test_source_key_name_part_is_one_safe_segment(filename: str) -> None:
    key = source_key(JOB, filename)
    prefix = f"sources/{JOB}/"
    assert key.startswith(prefix)
    name = key[len(prefix) :]
    assert name
    assert "/" not in name and "\\" not in name
    assert ".." not in name
    assert not name.startswith(".")
    assert key.count("/") == 2


def test_source_key_keeps_an_ordinary_name() -> None:
    job = str(uuid.uuid4())
    assert source_key(job, "My Holiday (2024).mp4") == f"sources/{job}/My_Holiday_2024_.mp4"

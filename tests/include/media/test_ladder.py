"""Ladder planning: pure arithmetic on source facts, so no media is needed.

Nothing is mocked: ``plan_ladder`` takes the numbers ffprobe would report
(display size, frame rate, video bitrate) and returns renditions.
"""

from __future__ import annotations

import pytest

from include.media.ladder import (
    DEFAULT_TIERS,
    MIN_VIDEO_KBPS,
    REDUNDANT_RATIO,
    Rendition,
    gop_frames,
    parse_tiers,
    plan_ladder,
)

# Sources of many shapes: broadcast, phone portrait, 4:3, cinema scope,
# tall phone screens, odd sizes from cropped exports and tiny clips.
SOURCES = [
    (3840, 2160),
    (1920, 1080),
    (1080, 1920),
    (1280, 720),
    (720, 1280),
    (1440, 1080),
    (1920, 800),
    (1080, 2340),
    (854, 481),
    (853, 480),
    (1279, 719),
    (640, 360),
    (321, 181),
    (320, 180),
]


def _aspect(width: int, height: int) -> float:
    return width / height


def test_1080p25_full_apple_ladder() -> None:
    ladder = plan_ladder(1920, 1080, 25.0, None)
    assert [(r.name, r.width, r.height) for r in ladder] == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("540p", 960, 540),
        ("432p", 768, 432),
        ("360p", 640, 360),
        ("234p", 416, 234),
    ]
    assert [r.bitrate_k for r in ladder] == [kbps for _, kbps in DEFAULT_TIERS]
    for r in ladder:
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert abs(_aspect(r.width, r.height) - 16 / 9) / (16 / 9) < 0.01
        assert r.fps == 25.0
        assert r.gop_frames == 50
        assert r.maxrate_k >= r.bitrate_k and r.bufsize_k >= r.maxrate_k


def test_bitrates_strictly_decrease_and_sizes_shrink() -> None:
    ladder = plan_ladder(1920, 1080, 25.0, None)
    for upper, lower in zip(ladder, ladder[1:]):
        assert lower.bitrate_k < upper.bitrate_k
        assert lower.width < upper.width and lower.height < upper.height


def test_portrait_source_gives_portrait_ladder() -> None:
    ladder = plan_ladder(1080, 1920, 30.0, None)
    assert [r.name for r in ladder] == ["1080p", "720p", "540p", "432p", "360p", "234p"]
    for r in ladder:
        assert r.width < r.height, r
        assert r.width % 2 == 0 and r.height % 2 == 0
    assert (ladder[0].width, ladder[0].height) == (1080, 1920)
    assert (ladder[-1].width, ladder[-1].height) == (234, 416)


def test_720p_source_is_never_upscaled() -> None:
    ladder = plan_ladder(1280, 720, 25.0, None)
    assert ladder[0].name == "720p"
    assert (ladder[0].width, ladder[0].height) == (1280, 720)
    assert all(r.width <= 1280 and r.height <= 720 for r in ladder)
    assert "1080p" not in {r.name for r in ladder}


def test_tiny_source_gets_one_rendition_at_source_size() -> None:
    ladder = plan_ladder(320, 180, 25.0, None)
    assert len(ladder) == 1
    only = ladder[0]
    assert (only.width, only.height) == (320, 180)
    assert only.name == "180p"
    assert MIN_VIDEO_KBPS <= only.bitrate_k <= DEFAULT_TIERS[-1][1]


@pytest.mark.parametrize("width,height", [(854, 481), (853, 480), (1279, 719), (321, 181), (1081, 1921)])
def test_odd_sizes_give_even_dims_never_over_source(width: int, height: int) -> None:
    ladder = plan_ladder(width, height, 25.0, None)
    assert ladder
    for r in ladder:
        assert r.width % 2 == 0 and r.height % 2 == 0, r
        assert r.width <= width and r.height <= height, r
        assert (r.width < r.height) == (width < height)


@pytest.mark.parametrize("width,height", SOURCES)
def test_display_aspect_kept_within_one_percent(width: int, height: int) -> None:
    source = _aspect(width, height)
    for r in plan_ladder(width, height, 25.0, None):
        assert abs(_aspect(r.width, r.height) - source) / source < 0.01, (width, height, r)
        assert r.width <= width and r.height <= height
        assert r.width % 2 == 0 and r.height % 2 == 0


def test_60fps_bitrates_are_about_one_and_a_half_times_30fps() -> None:
    at30 = plan_ladder(1920, 1080, 30.0, None)
    at60 = plan_ladder(1920, 1080, 60.0, None)
    assert [r.name for r in at30] == [r.name for r in at60]
    for slow, fast in zip(at30, at60):
        assert fast.bitrate_k == pytest.approx(slow.bitrate_k * 1.5, rel=0.01), (slow, fast)
        assert fast.gop_frames == 120 and slow.gop_frames == 60


def test_25_and_30fps_share_bitrates() -> None:
    at25 = plan_ladder(1920, 1080, 25.0, None)
    at2997 = plan_ladder(1920, 1080, 30000 / 1001, None)
    assert [r.bitrate_k for r in at25] == [r.bitrate_k for r in at2997]


def test_low_bitrate_source_caps_near_source() -> None:
    """A 720p source at 800 kb/s: no rung may spend much more than the source has."""
    ladder = plan_ladder(1280, 720, 25.0, 800)
    assert ladder[0].name == "720p"
    assert ladder[0].bitrate_k <= 880
    source_pixels = 1280 * 720
    for r in ladder:
        # Cap scales with area, so smaller rungs are capped lower still.
        area = (r.width * r.height) / source_pixels
        assert r.bitrate_k <= max(MIN_VIDEO_KBPS, round(800 * 1.1 * area**0.75)) + 1, r
    # Every kept rung is a real step down from the one above it.
    for upper, lower in zip(ladder, ladder[1:]):
        assert lower.bitrate_k < upper.bitrate_k * REDUNDANT_RATIO


def test_starved_source_drops_redundant_rungs() -> None:
    """At 100 kb/s the lower rungs all hit the bitrate floor: they add nothing and are dropped."""
    uncapped = plan_ladder(1280, 720, 25.0, None)
    starved = plan_ladder(1280, 720, 25.0, 100)
    assert len(starved) < len(uncapped)
    assert starved[0].name == "720p" and starved[0].bitrate_k <= 110
    for upper, lower in zip(starved, starved[1:]):
        assert lower.bitrate_k < upper.bitrate_k * REDUNDANT_RATIO
    assert all(r.bitrate_k >= MIN_VIDEO_KBPS for r in starved)


def test_close_custom_tiers_are_deduplicated() -> None:
    tiers = parse_tiers("[[720, 3000], [540, 2800], [360, 700]]")
    names = [r.name for r in plan_ladder(1280, 720, 25.0, None, tiers)]
    assert names == ["720p", "360p"]


def test_high_bitrate_source_is_not_capped() -> None:
    assert [r.bitrate_k for r in plan_ladder(1920, 1080, 25.0, 20000)] == [k for _, k in DEFAULT_TIERS]


def test_parse_tiers_default_and_valid_json() -> None:
    assert parse_tiers(None) == DEFAULT_TIERS
    assert parse_tiers("") == DEFAULT_TIERS
    # Sorted best first whatever order the operator wrote them in.
    assert parse_tiers("[[360, 700], [720, 3000]]") == ((720, 3000), (360, 700))
    custom = parse_tiers('[[720, "3000"], [480, 1200.0]]')
    assert custom == ((720, 3000), (480, 1200))
    ladder = plan_ladder(1920, 1080, 25.0, None, custom)
    assert [(r.width, r.height, r.bitrate_k) for r in ladder] == [(1280, 720, 3000), (854, 480, 1200)]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{\"720\": 3000}",
        "[720, 3000]",
        "[[720]]",
        "[[720, 3000, 1]]",
        "[[\"big\", 3000]]",
        "[[720, null]]",
    ],
)
def test_parse_tiers_malformed_json_explains_format(raw: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_tiers(raw)
    message = str(info.value)
    assert "TRANSCODE_LADDER" in message
    assert "[short_side, kbps]" in message


@pytest.mark.parametrize("raw", ["[]", "[[0, 3000]]", "[[720, 0]]", "[[720, -5]]"])
def test_parse_tiers_rejects_empty_or_non_positive(raw: str) -> None:
    with pytest.raises(ValueError, match="TRANSCODE_LADDER"):
        parse_tiers(raw)


@pytest.mark.parametrize("fps,expected", [(25.0, 50), (30000 / 1001, 60), (29.97, 60), (60.0, 120), (24000 / 1001, 48), (1.0, 2)])
def test_gop_frames_is_two_seconds(fps: float, expected: int) -> None:
    assert gop_frames(fps) == expected


def test_rendition_round_trips_through_dict() -> None:
    r = plan_ladder(1920, 1080, 25.0, None)[1]
    assert Rendition.from_dict(r.to_dict()) == r


def test_rejects_degenerate_sources() -> None:
    with pytest.raises(ValueError):
        plan_ladder(1, 1080, 25.0, None)

"""security.validation.sanitize_filename: user file names made safe for storage keys.

Pure string handling; nothing to mock.
"""

from __future__ import annotations

import re

import pytest

from security.validation import MAX_FILENAME_LENGTH, sanitize_filename

SAFE = re.compile(r"[A-Za-z0-9._-]+")

HOSTILE = [
    "../../etc/passwd",
    "..\\..\\windows\\system32\\config\\SAM",
    "/absolute/path/clip.mp4",
    "....//....//etc/shadow",
    "..",
    ".",
    "...",
    "../",
    "clip.mp4/..",
    "%2e%2e%2fetc%2fpasswd",
    "..%2f..%2fsecret",
    "\x00../../x.mp4",
    "a/b\\c/../d.mp4",
    "file:///etc/passwd",
    "concat:a.mp4|b.mp4",
    "$(rm -rf ~).mp4",
    "`id`.mp4",
    "clip.mp4; rm -rf /",
    "<script>alert(1)</script>.mp4",
    "name\nwith\rnewlines.mp4",
    " spaced out .mov ",
    "\u202egnp.exe",  # right-to-left override
    "ｖｉｄｅｏ．ｍｐ４",  # full-width
    "视频.mp4",
    "",
    "-rf.mp4",
    "x" * 1000,
]


def test_path_traversal_keeps_only_the_last_part() -> None:
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("/absolute/path/clip.mp4") == "clip.mp4"
    assert sanitize_filename("....//....//etc/shadow") == "shadow"


def test_nul_bytes_are_removed() -> None:
    assert sanitize_filename("clip\x00.mp4") == "clip.mp4"
    assert sanitize_filename("evil.mp4\x00.jpg") == "evil.mp4.jpg"
    assert "\x00" not in sanitize_filename("\x00\x00a\x00")


def test_backslash_paths() -> None:
    assert sanitize_filename("C:\\Users\\me\\Videos\\holiday.mp4") == "holiday.mp4"
    assert sanitize_filename("..\\..\\windows\\win.ini") == "win.ini"
    assert sanitize_filename("a/b\\c.mp4") == "c.mp4"


def test_unicode_is_folded_to_ascii() -> None:
    assert sanitize_filename("café crème.mp4") == "cafe_creme.mp4"
    assert sanitize_filename("Ångström_über.mov") == "Angstrom_uber.mov"
    assert sanitize_filename("ｖｉｄｅｏ．ｍｐ４") == "video.mp4"  # full-width forms fold by NFKD
    assert sanitize_filename("ﬁlm.mkv") == "film.mkv"  # ligature


def test_only_safe_characters_remain() -> None:
    assert sanitize_filename("my video (final) [v2].mp4") == "my_video_final_v2_.mp4"
    assert sanitize_filename("a;b|c&d$e`f'g\"h.mp4") == "a_b_c_d_e_f_g_h.mp4"
    assert sanitize_filename("tab\tand\nnewline.mov") == "tab_and_newline.mov"


def test_leading_dots_and_edge_punctuation_are_stripped() -> None:
    assert sanitize_filename(".htaccess") == "htaccess"
    assert sanitize_filename("...hidden.mp4") == "hidden.mp4"
    assert sanitize_filename("-rf.mp4") == "rf.mp4"  # never looks like a command-line option
    assert sanitize_filename("clip.mp4.") == "clip.mp4"
    assert sanitize_filename("clip..final...mp4") == "clip.final.mp4"  # no ".." anywhere
    assert sanitize_filename("__init__.py") == "init__.py"


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = sanitize_filename("a" * 300 + ".mp4")
    assert len(name) <= MAX_FILENAME_LENGTH == 100
    assert name.endswith(".mp4") and name.startswith("aaaa")
    long_ext = sanitize_filename("b" * 300 + ".averyveryverylongextension")
    assert len(long_ext) <= MAX_FILENAME_LENGTH
    no_ext = sanitize_filename("c" * 300)
    assert no_ext == "c" * MAX_FILENAME_LENGTH
    # The cut must not leave a separator dangling before the extension.
    dotted = sanitize_filename("d" * 94 + "_____" + ".mp4")
    assert len(dotted) <= MAX_FILENAME_LENGTH and dotted.endswith(".mp4") and "_.mp4" not in dotted


def test_exactly_max_length_is_kept() -> None:
    name = "e" * (MAX_FILENAME_LENGTH - 4) + ".mp4"
    assert sanitize_filename(name) == name


@pytest.mark.parametrize("name", ["", "..", ".", "../..", "/", "\\", "\x00", "视频", "...", "___", None])
def test_nothing_usable_gives_the_fallback(name) -> None:
    assert sanitize_filename(name) == "upload"
    assert sanitize_filename(name, fallback="source") == "source"


@pytest.mark.parametrize("name", HOSTILE)
def test_result_is_always_a_safe_single_segment(name: str) -> None:
    out = sanitize_filename(name)
    assert SAFE.fullmatch(out), out
    assert 0 < len(out) <= MAX_FILENAME_LENGTH
    assert not out.startswith((".", "-"))
    assert out not in {".", ".."}
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert ".." not in out, out
    # Idempotent: sanitizing a sanitized name changes nothing.
    assert sanitize_filename(out) == out


def test_ordinary_names_pass_unchanged() -> None:
    for name in ["clip.mp4", "Holiday_2024-07.mov", "a.b.c.mkv", "IMG_0001.MOV"]:
        assert sanitize_filename(name) == name

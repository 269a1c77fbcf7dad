"""Atomic writes: a failed write leaves the old file, a bad path is one line naming the file."""

from __future__ import annotations

import os

import pytest

from perfkit._io import OutputError, atomic_open, check_output_path, write_text


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    write_text(p, "old")
    write_text(p, "new contents")
    assert p.read_text() == "new contents"
    assert os.listdir(tmp_path) == ["a.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would create it, not mkstemp's 0600


def test_failure_mid_write_keeps_previous_file(tmp_path):
    p = tmp_path / "a.json"
    write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as fh:
            fh.write("half")
            raise RuntimeError("disk full in the middle")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("case", ["dir", "missing_parent", "parent_is_file"])
def test_bad_output_paths_name_the_file(tmp_path, case):
    if case == "dir":
        p = tmp_path
    elif case == "missing_parent":
        p = tmp_path / "nope" / "a.json"
    else:
        (tmp_path / "f").write_text("x")
        p = tmp_path / "f" / "a.json"
    with pytest.raises(OutputError) as e:
        write_text(p, "x")
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    with pytest.raises(OutputError):
        check_output_path(p)


def test_the_temporary_name_never_takes_an_existing_file(tmp_path, monkeypatch):
    """The temporary sibling is created exclusively: a name already taken (by another writer) is
    left alone and the next random name is used."""
    p = tmp_path / "a.json"
    draws = iter([b"\x00" * 6, b"\x00" * 6, b"\x01" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    taken = tmp_path / f".a.json.{'00' * 6}.tmp"
    taken.write_text("another writer's")
    write_text(p, "mine")
    assert p.read_text() == "mine" and taken.read_text() == "another writer's"
    assert sorted(os.listdir(tmp_path)) == sorted(["a.json", taken.name])

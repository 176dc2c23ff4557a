"""An export file is written whole or not at all, only its owner can read it, and no symlink is written through."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.export_file import replacing

EARLIER = b"an earlier export\n" * 100


class Interrupted(Exception):
    pass


def test_a_failure_in_the_middle_leaves_the_earlier_file_byte_for_byte(tmp_path: Path) -> None:
    target = tmp_path / "export.json"
    target.write_bytes(EARLIER)
    target.chmod(0o644)
    with pytest.raises(Interrupted), replacing(target) as handle:
        handle.write(b'{"half": "of an export')
        handle.flush()
        raise Interrupted
    assert target.read_bytes() == EARLIER and target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_the_new_file_appears_whole_and_is_0600_even_over_a_0644_one(tmp_path: Path) -> None:
    target = tmp_path / "export.json"
    target.write_bytes(EARLIER)
    target.chmod(0o644)
    with replacing(target) as handle:
        handle.write(b"new ")
        assert target.read_bytes() == EARLIER  # not yet: the path shows the old file until the end
        (partial,) = (p for p in tmp_path.iterdir() if p != target)
        assert partial.stat().st_mode & 0o777 == 0o600
        handle.write(b"export\n")
    assert target.read_bytes() == b"new export\n" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_a_symlink_at_the_path_is_replaced_and_its_pointee_untouched(tmp_path: Path) -> None:
    pointee = tmp_path / "someone-elses.txt"
    pointee.write_bytes(EARLIER)
    target = tmp_path / "export.json"
    target.symlink_to(pointee)
    with replacing(target) as handle:
        handle.write(b"export\n")
    assert pointee.read_bytes() == EARLIER
    assert not target.is_symlink() and target.read_bytes() == b"export\n"


def test_a_target_that_cannot_be_written_fails_before_the_block_runs(tmp_path: Path) -> None:
    ran = []
    for target, error in ((tmp_path / "missing" / "x.json", FileNotFoundError), (tmp_path, IsADirectoryError)):
        with pytest.raises(error), replacing(target):
            ran.append(target)
    assert ran == []

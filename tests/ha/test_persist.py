"""persist.py: where muted/backend are kept, and when a kept backend is (not) restored."""

from __future__ import annotations

from pathlib import Path

from stt_worker.persist import Saved, StateFile, state_dir


def test_state_dir_is_systemds_only(tmp_path: Path) -> None:
    """STATE_DIRECTORY (its first entry) is where state is kept; XDG_STATE_HOME is not used, so a
    worker run by hand never starts muted because a service once was; with none, nothing is kept."""
    both = {"STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b", "XDG_STATE_HOME": "/x"}
    assert state_dir(both) == tmp_path / "a"
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) is None
    assert state_dir({"STATE_DIRECTORY": "", "XDG_STATE_HOME": ""}) is None


def test_round_trip_and_configuration_change(tmp_path: Path) -> None:
    """Saved muted/backend come back; the backend only while STT_BACKEND is unchanged."""
    StateFile(tmp_path, "kitchen", "local").save(muted=True, backend="ws")
    assert StateFile(tmp_path, "kitchen", "local").load() == Saved(muted=True, backend="ws")
    assert StateFile(tmp_path, "kitchen", "ws").load() == Saved(muted=True, backend=None)
    assert StateFile(tmp_path, "office", "local").load() == Saved()


def test_absent_state_is_the_default_and_unreadable_state_is_muted(tmp_path: Path) -> None:
    """No file, or no directory at all, means the configured defaults; a file that is there but cannot
    be read or understood means muted (fails closed), whatever else it says."""
    f = StateFile(tmp_path, "kitchen", "local")
    assert f.path is not None
    assert f.load() == Saved()
    for bad in ("{not json", "[]", '{"muted": "no"}', '{"backend": "ws"}', ""):
        f.path.write_text(bad)
        assert f.load() == Saved(muted=True), bad
    f.path.write_bytes(b"\xff\xfe")
    assert f.load() == Saved(muted=True)
    f.path.unlink()
    f.path.mkdir()  # there, but not a file that can be read
    assert f.load() == Saved(muted=True)
    none = StateFile(None, "kitchen", "local")
    none.save(muted=True, backend="ws")
    assert none.load() == Saved()


def test_save_replaces_a_bad_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    f = StateFile(tmp_path, "kitchen", "local")
    assert f.path is not None
    f.path.write_text("{not json")
    f.save(muted=False, backend="local")
    assert f.load() == Saved(muted=False, backend="local")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-kitchen.json"]

"""The backend primitives behind status, cancel, groups, schedules and unique locks."""

from __future__ import annotations

from actors.backends.base import Backend


def test_status_hashes_merge_and_only_if_new_never_overwrites(any_backend: Backend) -> None:
    any_backend.put_statuses([("m1", {"state": "running", "attempts": "1"})], 60)
    any_backend.put_statuses([("m1", {"state": "queued"}), ("m2", {"state": "queued"})], 60,
                             only_if_new=True)  # fmt: skip
    any_backend.put_statuses([("m1", {"progress": "50"})], 60)
    assert any_backend.get_status("m1") == {"state": "running", "attempts": "1", "progress": "50"}
    assert any_backend.get_status("m2") == {"state": "queued"}
    assert any_backend.get_status("m3") is None


def test_keys_are_leases_and_locks(any_backend: Backend) -> None:
    assert any_backend.set_key("lease", "a", 60, only_if_absent=True)
    assert not any_backend.set_key("lease", "b", 60, only_if_absent=True)
    assert any_backend.get_keys(["lease", "nothing"]) == ["a", None]
    assert not any_backend.delete_key("lease", if_value="b")
    assert any_backend.delete_key("lease", if_value="a")
    assert any_backend.set_key("forever", "1", None)
    assert any_backend.delete_key("forever") and not any_backend.delete_key("forever")


def test_member_sets_count_each_member_once(any_backend: Backend) -> None:
    assert any_backend.add_member("g", "a", 60) == (True, 1)
    assert any_backend.add_member("g", "a", 60) == (False, 1)
    assert any_backend.add_member("g", "b", 60) == (True, 2)


def test_event_logs_are_read_from_a_point_on(any_backend: Backend) -> None:
    any_backend.record_event("log", "x", 60)
    [(member, at)] = any_backend.events_since("log", 0)
    any_backend.record_event("log", "y", 60)
    later = any_backend.events_since("log", at)
    assert member == "x" and {m for m, _ in later} >= {"y"}

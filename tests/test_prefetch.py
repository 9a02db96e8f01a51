"""How the default prefetch is sized from a worker's rate (`actors.prefetch`)."""

from __future__ import annotations

from actors.prefetch import BUFFER, CAP, PrefetchSizer


def test_the_size_is_the_work_of_the_buffer_at_the_rate_between_floor_and_cap() -> None:
    sizer = PrefetchSizer(16)
    assert sizer.size_for(0) == 16  # idle: the floor
    assert sizer.size_for(100) == 16  # slow actors: the floor
    assert sizer.size_for(4000) == round(4000 * BUFFER)  # 100 at 25 ms
    assert sizer.size_for(1e6) == CAP


def test_a_floor_above_the_cap_wins() -> None:
    assert PrefetchSizer(200).size_for(1e6) == 200


def test_small_changes_of_rate_keep_the_current_size() -> None:
    sizer = PrefetchSizer(16)
    assert sizer.resize(100, 4000) is None  # the same size
    assert sizer.resize(100, 4400) is None  # 110: within a quarter of 100
    assert sizer.resize(100, 6000) == 128  # 150, capped
    assert sizer.resize(100, 2000) == 50
    assert sizer.resize(16, 0) is None
    assert sizer.resize(50, 0) == 16

"""The supervisor's restart logic (services/stack/supervisor.py): backoff doubling from 2 s to a
5-minute cap, back to 2 s after 10 minutes up, as Kubernetes' CrashLoopBackOff."""

import pytest

from services.stack.supervisor import Track

pytestmark = pytest.mark.unit


def _delays(track: Track, exits: int, up_for: float = 1.0) -> list[float]:
    delays, now = [], 1000.0
    for _ in range(exits):
        track.seen_running(now)
        now += up_for
        track.seen_exited(now)
        delays.append(track.next_start_at - now)
        now = track.next_start_at
    return delays


def test_a_crash_loop_backs_off_doubling_up_to_the_cap():
    assert _delays(Track(), 10) == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_a_process_that_stayed_up_long_enough_restarts_at_once_again():
    track = Track()
    assert _delays(track, 4) == [2, 4, 8, 16]
    assert _delays(track, 1, up_for=600.0) == [2]
    assert _delays(track, 1, up_for=599.0) == [4]


def test_an_exit_is_counted_once_while_its_restart_waits():
    track = Track()
    track.seen_running(0.0)
    track.seen_exited(5.0)
    assert track.waiting and track.next_start_at == 7.0
    track.seen_running(7.0)
    assert not track.waiting and track.running_since == 7.0


def test_a_start_that_fails_is_tried_again_after_a_longer_wait(tmp_path):
    """The broker's port taken by another process: the supervisor logs it, records it, and
    tries again after the backoff instead of dying."""
    from services.stack import supervisor
    from services.stack.exceptions import StackError

    plan, tracks, calls = supervisor.Plan((supervisor.KAFKA,)), {}, []

    def start(state_dir, name, env):
        calls.append(name)
        if len(calls) == 1:
            raise StackError("port 19092 is taken by another process")
        return 4242

    assert supervisor.supervise_once(tmp_path, plan, tracks, 0.0, start) == []
    assert supervisor.supervise_once(tmp_path, plan, tracks, 2.0, start) == []
    record = supervisor.read_restarts(tmp_path)[supervisor.KAFKA]
    assert record["last_log_line"] == "start failed: port 19092 is taken by another process"
    assert tracks[supervisor.KAFKA].next_start_at == 6.0  # 2 s, then 4 s
    assert supervisor.supervise_once(tmp_path, plan, tracks, 5.9, start) == []
    assert supervisor.supervise_once(tmp_path, plan, tracks, 6.0, start) == [supervisor.KAFKA]
    assert calls == [supervisor.KAFKA, supervisor.KAFKA]

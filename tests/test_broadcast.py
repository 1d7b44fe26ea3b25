"""Subscribers: add/remove/publish/count, idempotent remove, publish that never
blocks, close that wakes every handler at once, and a 32-thread stress test.

Every wait is bounded; the only time checks are generous liveness bounds
("woke within N seconds"), never performance.
"""

import dataclasses
import os
import random
import sys
import threading
import time

import pytest

from air_std.broadcast import Event, RegistryClosed, Subscriber, Subscribers
from air_std.messages import STOP

JOIN_S = 10.0
RELOAD = Event("reload", "")


def start(name, fn, *args):
    t = threading.Thread(target=fn, args=args, name=name)
    t.start()
    return t


def drain(sub):
    out = []
    while True:
        item = sub.get(timeout=0)
        if item is None:
            return out
        out.append(item)


@pytest.fixture
def no_thread_left():
    baseline = threading.active_count()
    yield
    assert threading.active_count() == baseline, [t.name for t in threading.enumerate()]


def test_event_is_a_frozen_value():
    e = Event("build-failed", '{"command": "go build"}')
    assert e == Event("build-failed", '{"command": "go build"}')
    assert Event("reload").data == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.name = "reload"


def test_add_publish_get_count_remove():
    subs = Subscribers()
    a, b = subs.add(), subs.add()
    assert isinstance(a, Subscriber) and isinstance(a.id, int)
    assert a.id != b.id
    assert subs.count() == 2
    assert a.get(timeout=0) is None
    assert a.get(timeout=0.01) is None

    assert subs.publish(RELOAD) == 2
    assert a.get(timeout=1) == RELOAD
    assert b.get(timeout=1) == RELOAD
    assert a.get(timeout=0) is None

    subs.remove(a.id)
    assert subs.count() == 1
    failed = Event("build-failed", '{"error": "exit status 2"}')
    assert subs.publish(failed) == 1
    assert b.get(timeout=1) == failed
    assert a.get(timeout=0) is STOP  # removed: its handler is told to finish


def test_events_arrive_in_order():
    subs = Subscribers(maxsize=8)
    sub = subs.add()
    events = [Event("reload", str(i)) for i in range(5)]
    for e in events:
        subs.publish(e)
    assert drain(sub) == events


def test_ids_are_never_reused():
    subs = Subscribers()
    seen = set()
    for _ in range(50):
        sub = subs.add()
        assert sub.id not in seen
        seen.add(sub.id)
        subs.remove(sub.id)
    assert subs.count() == 0


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError):
        Subscribers(maxsize=0)


def test_remove_is_idempotent_before_and_after_close():
    subs = Subscribers()
    sub = subs.add()
    subs.remove(12345)  # never existed
    subs.remove(sub.id)
    subs.remove(sub.id)
    assert subs.count() == 0

    other = subs.add()
    subs.close()
    subs.remove(other.id)
    subs.remove(other.id)
    subs.remove(sub.id)
    subs.remove(-1)
    assert subs.count() == 0


def test_remove_from_many_threads_at_once(no_thread_left):
    subs = Subscribers()
    keep = subs.add()
    victims = [subs.add() for _ in range(10)]
    errors = []
    go = threading.Barrier(16, timeout=JOIN_S)

    def remover():
        try:
            go.wait()
            for v in victims:
                subs.remove(v.id)
        except BaseException as e:
            errors.append(repr(e))

    threads = [start("remover-%d" % i, remover) for i in range(16)]
    for t in threads:
        t.join(JOIN_S)
    assert not [t for t in threads if t.is_alive()]
    assert not errors
    assert subs.count() == 1
    assert all(v.get(timeout=0) is STOP for v in victims)
    assert keep.get(timeout=0) is None


def test_publish_never_blocks_and_drops_the_oldest(no_thread_left):
    subs = Subscribers(maxsize=4)
    slow = subs.add()  # a browser that stopped reading
    counts = []
    # In a thread, so a blocking publish fails the join instead of hanging the suite.
    t = start("publisher", lambda: counts.extend(subs.publish(Event("reload", str(i))) for i in range(10)))
    t.join(JOIN_S)
    assert not t.is_alive(), "publish blocked on a full mailbox"
    assert counts == [1] * 10
    assert [e.data for e in drain(slow)] == ["6", "7", "8", "9"]
    assert slow.dropped == 6


def test_a_stuck_subscriber_does_not_hold_back_the_others():
    subs = Subscribers(maxsize=2)
    stuck, live = subs.add(), subs.add()
    for i in range(20):
        assert subs.publish(Event("reload", str(i))) == 2
        assert live.get(timeout=1) == Event("reload", str(i))
    assert [e.data for e in drain(stuck)] == ["18", "19"]


def test_close_wakes_blocked_handlers_at_once(no_thread_left):
    subs = Subscribers()
    n = 20
    results = {}
    woke = threading.Event()
    lock = threading.Lock()

    def handler(i):
        sub = subs.add()
        item = sub.get(timeout=60)  # far past the join bound: only close() can end it in time
        with lock:
            results[i] = item
            if len(results) == n:
                woke.set()
        subs.remove(sub.id)

    threads = [start("sse-%d" % i, handler, i) for i in range(n)]
    deadline = time.monotonic() + JOIN_S
    while subs.count() < n and time.monotonic() < deadline:
        woke.wait(0.01)
    assert subs.count() == n
    assert not woke.wait(0.2), "a handler returned before close()"

    subs.close()
    assert woke.wait(2.0), "close() did not wake every handler"
    for t in threads:
        t.join(2.0)
    assert not [t.name for t in threads if t.is_alive()]
    assert all(item is STOP for item in results.values())
    assert subs.count() == 0


def test_close_gets_through_a_full_mailbox_and_stays_closed():
    subs = Subscribers(maxsize=2)
    sub = subs.add()
    for _ in range(5):
        subs.publish(RELOAD)
    subs.close()
    assert sub.get(timeout=1) is STOP
    assert sub.get(timeout=1) is STOP  # sticky: a second look cannot block
    assert sub.stopped
    assert subs.publish(RELOAD) == 0
    assert sub.get(timeout=0) is STOP


def test_add_after_close_is_refused_and_close_is_idempotent():
    subs = Subscribers()
    assert not subs.closed
    subs.add()
    subs.close()
    subs.close()
    assert subs.closed
    with pytest.raises(RegistryClosed):
        subs.add()
    assert issubclass(RegistryClosed, RuntimeError)
    assert subs.count() == 1  # the handler removes itself after STOP


def test_stress_32_threads_at_random(no_thread_left):
    """32 threads add, remove, publish, count and close at random for ~3 s.

    Rounds of ~0.5 s, each with a fresh registry: 8 threads behave like SSE
    handlers (add, get until STOP, remove, re-add while open), 24 do random
    operations, and one to three of those call close() at the same random moment.
    Every round: no exception, every handler finishes promptly after close,
    every subscriber ever added answers STOP, no thread left.
    """
    seed = int(os.environ.get("AIR_STRESS_SEED", "20240607"))
    budget_s = float(os.environ.get("AIR_STRESS_SECONDS", "3.0"))
    round_s = 0.5
    n_handlers, n_chaos = 8, 24
    master = random.Random(seed)
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # more interleavings per second
    end = time.monotonic() + budget_s
    rounds = 0
    try:
        while time.monotonic() < end:
            _stress_round(master.randrange(1 << 30), round_s, n_handlers, n_chaos)
            rounds += 1
    finally:
        sys.setswitchinterval(old_switch)
    assert rounds >= 1


def _stress_round(seed, round_s, n_handlers, n_chaos):
    subs = Subscribers(maxsize=4)
    rng = random.Random(seed)
    close_at = time.monotonic() + rng.uniform(0.05, round_s * 0.8)
    round_end = time.monotonic() + round_s
    closers = set(rng.sample(range(n_chaos), rng.randint(1, 3)))
    errors = []
    added = []  # every Subscriber ever handed out (list.append is atomic)
    handler_stops = []
    closed_seen = threading.Event()

    def guard(name, fn, *args):
        try:
            fn(*args)
        except BaseException as e:
            errors.append("%s: %r (seed %d)" % (name, e, seed))

    def handler(r):
        while True:
            try:
                sub = subs.add()
            except RegistryClosed:
                return
            added.append(sub)
            try:
                while True:
                    item = sub.get(timeout=r.uniform(0.001, 0.05))
                    if item is STOP:
                        handler_stops.append(sub.id)
                        break
                    if item is not None and not isinstance(item, Event):
                        raise AssertionError("unexpected item %r" % (item,))
                    # The browser tab closes; but once the registry is closed a
                    # handler waits for its STOP, so a lost wake-up hangs it.
                    if r.random() < 0.05 and not subs.closed:
                        break
            finally:
                subs.remove(sub.id)
            if subs.closed:
                return

    def chaos(i, r):
        mine = []
        closer = i in closers
        while time.monotonic() < round_end:
            if closer and time.monotonic() >= close_at:
                closer = False  # each closer calls close() once, racing any other closer
                subs.close()
                closed_seen.set()
            op = r.random()
            if op < 0.25:
                try:
                    sub = subs.add()
                except RegistryClosed:
                    if not subs.closed:
                        raise AssertionError("RegistryClosed before close()")
                    continue
                added.append(sub)
                mine.append(sub)
            elif op < 0.45:
                if subs.closed:
                    # Removing after close: only ids already stopped or unknown,
                    # since removing would also hide a subscriber close() missed.
                    done = [s for s in mine if s.stopped]
                    subs.remove(r.choice(done).id if done else r.randrange(-5, 10 ** 6))
                elif mine and r.random() < 0.7:
                    subs.remove(mine.pop(r.randrange(len(mine))).id)
                elif added:
                    subs.remove(r.choice(added).id)  # someone else's: must be harmless
                else:
                    subs.remove(r.randrange(-5, 10 ** 6))
            elif op < 0.8:
                n = subs.publish(Event(r.choice(("reload", "build-failed")), str(i)))
                if n < 0:
                    raise AssertionError("publish returned %d" % n)
            elif op < 0.9:
                if subs.count() < 0:
                    raise AssertionError("negative count")
            elif mine:
                item = r.choice(mine).get(timeout=0)
                if item is not None and item is not STOP and not isinstance(item, Event):
                    raise AssertionError("unexpected item %r" % (item,))
            else:
                _ = subs.closed
        if closer:
            # The round ended before this thread reached close_at (a loaded
            # machine may not schedule it in time): it still closes, once.
            subs.close()
            closed_seen.set()

    threads = []
    for i in range(n_handlers):
        r = random.Random(rng.randrange(1 << 30))
        threads.append(start("sse-%d" % i, guard, "sse-%d" % i, handler, r))
    for i in range(n_chaos):
        r = random.Random(rng.randrange(1 << 30))
        threads.append(start("chaos-%d" % i, guard, "chaos-%d" % i, chaos, i, r))

    # Only the closers' close() may end this round: the handlers must all see
    # STOP from it, with no second close() to paper over a lost wake-up.
    deadline = time.monotonic() + round_s + JOIN_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        subs.close()  # unblock them so the suite can go on, then report
        for t in threads:
            t.join(JOIN_S)
    assert not errors, errors[:5]
    assert closed_seen.is_set(), "no closer reached close() (seed %d)" % seed
    assert not alive, "threads did not finish after close() (seed %d): %s" % (seed, alive)

    ids = [s.id for s in added]
    assert len(ids) == len(set(ids)), "an id was handed out twice (seed %d)" % seed
    # No lost wake-up: every subscriber ever added now answers STOP at once.
    not_stopped = [s for s in added if s.get(timeout=0) is not STOP]
    assert not not_stopped, "no STOP for %r (seed %d)" % (not_stopped[:5], seed)
    subs.close()  # as the main thread does at shutdown: idempotent
    with pytest.raises(RegistryClosed):
        subs.add()
    for s in added:
        subs.remove(s.id)
    assert subs.count() == 0

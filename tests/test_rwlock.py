"""RWLock: shared readers, exclusive writers, writer preference, timeouts,
release on exception, and an invariant check under contention.

Every wait is bounded. "Did not happen" checks use a short wait that can only
pass falsely, never fail falsely, so they cannot make the suite flaky.
"""

import sys
import threading

import pytest

from conftest import wait_until

from air_std.rwlock import RWLock

JOIN_S = 10.0


@pytest.fixture
def fast_switching():
    """Switch threads often so races show up within a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


class Workers:
    """Named threads that record exceptions, joined with a bound at the end."""

    def __init__(self):
        self.threads = []
        self.errors = []

    def start(self, name, fn, *args):
        def body():
            try:
                fn(*args)
            except BaseException as e:  # reported by join_all, with the thread name
                self.errors.append((name, repr(e)))

        t = threading.Thread(target=body, name=name)
        self.threads.append(t)
        t.start()
        return t

    def join_all(self, timeout=JOIN_S):
        for t in self.threads:
            t.join(timeout)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, "threads still running: %s" % alive
        assert not self.errors, self.errors


@pytest.fixture
def workers():
    baseline = threading.active_count()
    w = Workers()
    yield w
    w.join_all()
    assert threading.active_count() == baseline


def writers_waiting(lock):
    with lock._mutex:
        return lock._writers_waiting


def test_readers_hold_it_together(workers):
    lock = RWLock()
    n = 8
    # Every reader waits at the barrier while holding the read side: the
    # barrier only opens if all eight hold it at once.
    barrier = threading.Barrier(n, timeout=JOIN_S)

    def reader():
        with lock.read:
            barrier.wait()

    for i in range(n):
        workers.start("reader-%d" % i, reader)
    workers.join_all()
    assert lock.acquire_write(timeout=0)
    lock.release_write()


def test_writer_excludes_readers_and_writers(workers):
    lock = RWLock()
    got = threading.Event()

    def reader():
        with lock.read:
            got.set()

    assert lock.acquire_write(timeout=1)
    assert not lock.acquire_read(timeout=0)
    assert not lock.acquire_write(timeout=0)
    workers.start("reader", reader)
    assert not got.wait(0.2), "a reader got in while a writer held the lock"
    lock.release_write()
    assert got.wait(JOIN_S)


def test_readers_exclude_a_writer():
    lock = RWLock()
    assert lock.acquire_read(timeout=1)
    assert lock.acquire_read(timeout=1)
    assert not lock.acquire_write(timeout=0)
    lock.release_read()
    assert not lock.acquire_write(timeout=0)
    lock.release_read()
    assert lock.acquire_write(timeout=0)
    lock.release_write()


def test_waiting_writers_go_before_new_readers(workers):
    lock = RWLock()
    order = []
    order_lock = threading.Lock()

    def record(what):
        with order_lock:
            order.append(what)

    def writer(i):
        with lock.write:
            record("w%d" % i)

    def reader(i):
        with lock.read:
            record("r%d" % i)

    # A reader holds the lock while three writers queue behind it.
    assert lock.acquire_read(timeout=1)
    for i in range(3):
        workers.start("writer-%d" % i, writer, i)
    wait_until(lambda: writers_waiting(lock) == 3, timeout=JOIN_S, what="3 writers waiting")

    # Writer preference: a new reader may not overtake the queued writers...
    assert not lock.acquire_read(timeout=0)
    for i in range(3):
        workers.start("reader-%d" % i, reader, i)
    assert not lock.acquire_read(timeout=0.1)
    assert order == []

    # ...and once the first reader lets go, everybody finishes, writers first.
    lock.release_read()
    workers.join_all()
    assert sorted(order[:3]) == ["w0", "w1", "w2"]
    assert sorted(order[3:]) == ["r0", "r1", "r2"]
    assert lock.acquire_write(timeout=0)
    lock.release_write()


def test_no_writer_starvation_under_a_stream_of_readers(workers):
    lock = RWLock()
    stop = threading.Event()
    reads = [0]

    def reader():
        # Holds overlap (each reader keeps the lock for a moment), so without
        # writer preference the reader count would never drop to zero.
        while not stop.is_set():
            with lock.read:
                reads[0] += 1
                stop.wait(0.002)

    for i in range(8):
        workers.start("reader-%d" % i, reader)
    try:
        wait_until(lambda: reads[0] > 50, timeout=JOIN_S, what="readers running")
        for _ in range(20):
            assert lock.acquire_write(timeout=JOIN_S), "writer starved by readers"
            lock.release_write()
    finally:
        stop.set()


def test_context_managers_release_on_exception():
    lock = RWLock()
    with pytest.raises(ValueError):
        with lock.read:
            assert not lock.acquire_write(timeout=0)
            raise ValueError("boom")
    assert lock.acquire_write(timeout=0)
    lock.release_write()

    with pytest.raises(KeyError):
        with lock.write:
            assert not lock.acquire_read(timeout=0)
            raise KeyError("boom")
    assert lock.acquire_read(timeout=0)
    lock.release_read()


def test_timeouts_return_false_and_leave_no_trace():
    lock = RWLock()
    with lock.write:
        assert lock.acquire_read(timeout=0.05) is False
        assert lock.acquire_write(timeout=0.05) is False
    with lock.read:
        assert lock.acquire_write(timeout=0.05) is False
        # The writer that gave up must not keep holding new readers back.
        assert lock.acquire_read(timeout=0) is True
        lock.release_read()
    assert writers_waiting(lock) == 0
    assert lock.acquire_write(timeout=0) is True
    lock.release_write()


def test_a_writer_timing_out_lets_blocked_readers_in(workers):
    lock = RWLock()
    got = threading.Event()

    def reader():
        assert lock.acquire_read(timeout=30)
        got.set()
        lock.release_read()

    assert lock.acquire_read(timeout=1)
    writer = workers.start("writer", lock.acquire_write, 1.0)
    wait_until(lambda: writers_waiting(lock) == 1, timeout=JOIN_S, what="writer waiting")
    workers.start("reader", reader)
    # The reader is parked behind the writer until the writer's timeout ends;
    # then it must be woken even though our read side is still held.
    writer.join(JOIN_S)
    assert got.wait(3.0), "reader not woken when the waiting writer gave up"
    lock.release_read()


def test_release_without_acquire_is_an_error():
    lock = RWLock()
    with pytest.raises(RuntimeError):
        lock.release_read()
    with pytest.raises(RuntimeError):
        lock.release_write()


def test_invariant_holds_under_contention(workers, fast_switching):
    lock = RWLock()
    state = {"a": 0, "b": 0, "readers": 0, "writers": 0, "max_readers": 0}
    bad = []
    stats_lock = threading.Lock()
    writers_done = threading.Event()
    n_writers, n_readers, rounds = 6, 12, 300

    def enter(kind):
        with stats_lock:
            state[kind] += 1
            if state["writers"] > 1 or (state["writers"] and state["readers"]):
                bad.append(dict(state))
            state["max_readers"] = max(state["max_readers"], state["readers"])

    def leave(kind):
        with stats_lock:
            state[kind] -= 1

    def writer():
        for _ in range(rounds):
            with lock.write:
                enter("writers")
                state["a"] += 1
                # A gap between the two updates for readers to fall into.
                for _ in range(20):
                    pass
                state["b"] += 1
                leave("writers")

    def reader():
        checks = 0
        while not writers_done.is_set() or checks < 10:
            with lock.read:
                enter("readers")
                if state["a"] != state["b"]:
                    bad.append(("torn read", state["a"], state["b"]))
                leave("readers")
            checks += 1

    writer_threads = [workers.start("writer-%d" % i, writer) for i in range(n_writers)]
    for i in range(n_readers):
        workers.start("reader-%d" % i, reader)
    for t in writer_threads:
        t.join(JOIN_S * 3)
    writers_done.set()
    workers.join_all()
    assert not bad, bad[:5]
    assert state["a"] == state["b"] == n_writers * rounds
    assert state["readers"] == state["writers"] == 0

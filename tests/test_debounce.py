"""debounce.Debouncer with a clock the test moves: the rules of when a batch of
changes is due, without waiting and without a build."""

from air_std.debounce import Debouncer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(delay_s):
    clock = Clock()
    return Debouncer(delay_s, clock=clock), clock


def test_nothing_pending_is_never_due():
    changes, clock = make(0.3)
    assert not changes and not changes.due() and changes.deadline() is None
    assert changes.wait_s(1.0) == 1.0
    changes.add(())  # an empty batch is not a change
    assert not changes and not changes.due()


def test_a_burst_within_the_delay_is_one_batch():
    changes, clock = make(0.25)
    for i in range(5):
        changes.add(["f%d.go" % i])
        clock.now += 0.125  # each save 125 ms after the previous one
        assert not changes.due()
    assert changes.wait_s(1.0) == 0.125  # 250 ms after the last save
    clock.now += 0.125
    assert changes.due()
    assert changes.take() == ["f0.go", "f1.go", "f2.go", "f3.go", "f4.go"]
    assert not changes and not changes.due()


# times below are binary fractions, so that the clock's sums are exact


def test_a_steady_stream_is_capped():
    changes, clock = make(0.25)  # cap: max(2 s, 10 delays) = 2.5 s after the first change
    start = clock.now
    while not changes.due():
        changes.add(["gen.go"])
        clock.now += 0.125  # never 250 ms of quiet
        assert clock.now - start < 10, "the stream postponed the build forever"
    assert clock.now - start == 2.5
    assert len(changes.take()) == 20


def test_a_short_delay_is_capped_at_two_seconds():
    changes, clock = make(0.0625)
    start = clock.now
    while not changes.due():
        changes.add(["gen.go"])
        clock.now += 0.03125
    assert clock.now - start == 2.0


def test_delay_zero_is_due_at_once():
    changes, clock = make(0)
    changes.add(["main.go"])
    assert changes.due() and changes.wait_s(1.0) == 0.0
    assert changes.take() == ["main.go"]


def test_changes_while_a_build_runs_open_a_new_window():
    changes, clock = make(0.25)
    changes.add(["a.go"])
    clock.now += 0.25
    assert changes.take() == ["a.go"]  # the build starts
    clock.now += 5.0  # a long build: the old window is far past its cap
    changes.add(["b.go"])
    assert not changes.due()  # timed from b.go's arrival, not from a.go's
    clock.now += 0.125
    changes.add(["c.go"])
    clock.now += 0.1875
    assert not changes.due()
    clock.now += 0.0625
    assert changes.due() and changes.take() == ["b.go", "c.go"]

"""Seeded property checks with the standard library's `random` only (the tests
need nothing beyond pytest).

A property test draws CASES inputs, each from its own random.Random seeded
with the test's name, the run's seed and the case number, so any one case
can be made again alone. The first failing case fails the test with the
seed, the case number and the input (repr), and the assertion chained below.

AIR_PROPERTY_SEED=S sets the seed (default below, fixed: `make test` is
repeatable); AIR_PROPERTY_ONLY=N runs case N alone (replay a failure with the
seed and number its message gives); AIR_PROPERTY_SCALE=K runs K times the
cases of every property test (a longer search; fresh seeds find new cases).
"""

import os
import random

SEED = int(os.environ.get("AIR_PROPERTY_SEED", "20261201"))
ONLY = os.environ.get("AIR_PROPERTY_ONLY")
SCALE = float(os.environ.get("AIR_PROPERTY_SCALE", "1"))


def case_random(name, number, seed=None):
    """The random.Random for case `number` of the property `name`."""
    return random.Random("%s:%d:%d" % (name, SEED if seed is None else seed, number))


def check_cases(name, cases, generate, check, show=repr):
    """For each case: input = generate(rnd), then check(input); returns the
    number of cases run. A failure raises AssertionError naming the seed, the
    case and show(input); the original error is chained (`from`)."""
    numbers = [int(ONLY)] if ONLY is not None else range(max(1, int(cases * SCALE)))
    for number in numbers:
        value = generate(case_random(name, number))
        try:
            check(value)
        except Exception as exc:
            raise AssertionError(
                "%s: case %d failed (AIR_PROPERTY_SEED=%d AIR_PROPERTY_ONLY=%d replays it): %s: %s\n"
                "input: %s" % (name, number, SEED, number, type(exc).__name__,
                               str(exc)[:2000], show(value)[:20000])) from exc
    return len(numbers)


# ---- small generators shared by the property tests --------------------------------

def sized(rnd, low, high):
    """A size in [low, high], biased to the ends and to small sizes (where bugs
    with empty and one-element inputs live) as well as uniform."""
    pick = rnd.random()
    if pick < 0.05:
        return low
    if pick < 0.15:
        return high
    if pick < 0.4:
        return rnd.randint(low, min(high, low + 2))
    return rnd.randint(low, high)


def integer(rnd, low, high):
    """An int in [low, high]: the bounds, zero, small values, powers of two
    and their neighbours, or uniform."""
    pick = rnd.random()
    if pick < 0.1:
        n = rnd.choice([low, high])
    elif pick < 0.25:
        n = rnd.randint(-3, 3)
    elif pick < 0.5:
        n = rnd.choice([1, -1]) * (2 ** rnd.randrange(high.bit_length() + 1) + rnd.randint(-1, 1))
    elif pick < 0.75:
        n = rnd.choice([1, -1]) * rnd.getrandbits(rnd.randint(1, high.bit_length()))
    else:
        n = rnd.randint(low, high)
    return min(high, max(low, n))

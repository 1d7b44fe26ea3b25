"""air_std: live reload for server apps, a standard-library port of Air.

Nothing is imported here on purpose: `python air_std.pyz -v` must stay fast,
so each mode imports only the modules it needs.
"""

__version__ = "0.1.0"

# Ctrl-C before the engine has its own handlers. Python's handler raises
# KeyboardInterrupt, which ends the run with 130; but Python drops an exception
# raised inside a finalizer or weakref callback ("Exception ignored in ..."),
# and the import system runs such callbacks while air_std's modules load. So
# the handler also remembers the signal, and the engine, once its handlers are
# in place, acts on any it finds here: a Ctrl-C is never lost.
early_signals = []


def _on_early_sigint(signum, frame):
    early_signals.append(signum)
    raise KeyboardInterrupt


def _quiet_dropped_interrupt(unraisable):
    # Python would print "Exception ignored in ..." and a traceback for the
    # KeyboardInterrupt it dropped; it is in early_signals, so the engine stops
    # cleanly, and a Ctrl-C at start-up must not look like a crash
    if early_signals and issubclass(unraisable.exc_type, KeyboardInterrupt):
        return
    import sys
    sys.__unraisablehook__(unraisable)


def catch_early_signals():
    """Main thread, first thing: install the handler above (once)."""
    import signal
    import sys
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _on_early_sigint)
        except ValueError:  # not the main thread (an embedding program): leave it
            return
        sys.unraisablehook = _quiet_dropped_interrupt


def version_line():
    """air_std's version line: `-v` ends with it, and it is the default start-up banner."""
    import sys
    return "air_std %s (python %d.%d.%d)" % ((__version__,) + tuple(sys.version_info[:3]))

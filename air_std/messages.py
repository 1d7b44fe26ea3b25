"""Messages passed between threads through queues (watcher -> runner,
watcher -> the rules part, engine -> runner for a restart asked for by
hand or by an edited env file, and the rules part -> runner for a rule with
`restart = true`).

Frozen dataclasses so a message can be shared between threads without copies,
plus two sentinels that wake a consumer blocked in `Queue.get(timeout=...)`:
STOP (stop now) and APP_GONE (the app's output thread saw the app exit: the
runner looks at it now instead of every 100 ms).
"""

from dataclasses import dataclass
from typing import Tuple

STOP = object()
APP_GONE = object()


@dataclass(frozen=True)
class ChangeBatch:
    """Paths (absolute) that changed in one poll; any of the tuples may be empty."""

    created: Tuple[str, ...] = ()
    modified: Tuple[str, ...] = ()
    deleted: Tuple[str, ...] = ()

    @property
    def paths(self):
        return self.created + self.modified + self.deleted

    def __bool__(self):
        return bool(self.created or self.modified or self.deleted)


@dataclass(frozen=True)
class RuleChanges:
    """Paths (absolute, sorted) that changed in one pass and belong to one
    [[build.rules]] entry: its index in build.rules (watcher -> rules part)."""

    index: int
    paths: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RestartNow:
    """Rebuild and restart the app now, as if a file had changed (nodemon's `rs`).
    `why` names who asked ("SIGUSR1"), for the log line."""

    why: str


@dataclass(frozen=True)
class RestartApp:
    """Restart the app without building: a [[build.rules]] entry with
    `restart = true` (after its command), or an edited env file (the app's
    environment changed, not its code). `why` says which ("[name]", ".env
    changed"), for the log line. The reload that follows is the app start's,
    as after a build."""

    why: str

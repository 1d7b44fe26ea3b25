"""Messages passed between threads through queues (watcher -> runner, and
watcher -> the rules part).

Frozen dataclasses so a message can be shared between threads without copies,
plus the STOP sentinel that wakes a consumer blocked in `Queue.get(timeout=...)`.
"""

from dataclasses import dataclass
from typing import Tuple

STOP = object()


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

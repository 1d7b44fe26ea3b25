"""The hot set: the files changed during this run, and their directories,
checked every `hot_interval_s` (0.1 s) with a few stats.

Used by the watcher thread ("air-watcher") through the polling driver
(watch_poll.py), which heats every change, and the auto driver
(watch_auto.py), which heats only the changes inotify missed; tests also
call it with no thread. A developer edits the same few files again and
again: checking those often costs little, and sees their next change within
about 100 ms whatever the full pass's interval.

A check stats each hot directory and lists it again only when its (mtime,
inode) moved (an editor that saves by renaming changes the directory, not the
file), then stats each hot file. Both sets are LRU and capped, so a check
costs at most a few hundred stats.
"""

import os
from collections import OrderedDict

from air_std.treenode import dir_key

__all__ = ["HotSet", "HOT_DIRS_MAX", "HOT_FILES_MAX"]

HOT_DIRS_MAX = 32   # caps: a check costs at most this many stats
HOT_FILES_MAX = 128


class HotSet:
    """Recently changed files and directories of one snapshot."""

    def __init__(self, snapshot, max_dirs=HOT_DIRS_MAX, max_files=HOT_FILES_MAX):
        self.snapshot = snapshot
        self.max_dirs = max_dirs
        self.max_files = max_files
        self._dirs = OrderedDict()   # dir path -> Node
        self._files = OrderedDict()  # (dir path, name) -> Node

    def __bool__(self):
        """True when there is something to check (every hot file's directory is hot)."""
        return bool(self._dirs)

    def check(self, scan):
        """Bring the hot directories and files up to date, recording on `scan`."""
        snapshot = self.snapshot
        listed = set()
        for path, node in sorted(self._dirs.items(), key=_depth_of_path):
            if not node.alive:
                del self._dirs[path]
                continue
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None or dir_key(st) != node.dkey:
                snapshot.scan_dir(node, scan)  # records the new key
                listed.add(node)
        for (path, name), node in list(self._files.items()):
            if not node.alive:
                del self._files[(path, name)]
            elif node not in listed and snapshot.check_file(node, name, scan):
                listed.add(node)
        snapshot.drain(scan)

    def heat(self, scan):
        """Make the directories and files of a pass's changes hot (the most
        recent first out of the caps last)."""
        for node in scan.new_dirs or ():
            self.heat_dir(node)
        for paths, is_file in ((scan.created, True), (scan.modified, True),
                               (scan.deleted, False)):
            for p in paths or ():
                self.heat_path(p, is_file)

    def heat_dir(self, node):
        """Make one directory hot (one found new: files may follow)."""
        self._heat_dir(node.path, node)

    def heat_path(self, path, is_file):
        """Make one changed path hot: its directory, and itself when it is a
        file that still exists."""
        d, _, name = path.rpartition("/")
        d = d or "/"
        node = self.snapshot.node_at(d)
        if node is None:
            return
        self._heat_dir(d, node)
        if is_file:
            key = (d, name)
            self._files[key] = node
            self._files.move_to_end(key)
            if len(self._files) > self.max_files:
                self._files.popitem(last=False)

    def _heat_dir(self, path, node):
        hot = self._dirs
        if hot.get(path) is not node:
            hot[path] = node  # node.dkey, from its last listing, holds for the check too
        hot.move_to_end(path)
        if len(hot) > self.max_dirs:
            hot.popitem(last=False)


def _depth_of_path(item):
    # Parents first: a parent's listing may drop or replace a child.
    return item[0].count("/")

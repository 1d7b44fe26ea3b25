"""The watcher: finds created, modified and deleted files under the root.

Runs in the thread "air-watcher" (started by the engine); `poll_once()` and
`poll_hot()` also run one pass with no thread at all (tests do that).

How a pass stays cheap (issue 5):
- The snapshot is a tree of `_Node`s, one per walked directory, each with
  `files: {name: key}` where key packs (st_mtime_ns, st_size, st_ino) into one
  int (see _key), compared in place; an unchanged directory allocates
  nothing that outlives the pass.
- Directories are opened once and listed with `os.scandir(fd)`; entries are
  judged from their name and d_type *before* any stat (filters.py), and the
  stat of a watched file is an `fstatat` relative to that fd, so the kernel
  does no path walk per file.
- A directory is listed only when its (mtime, inode) moved since its last
  listing: creating, deleting or renaming an entry moves the directory's
  mtime, writing to a file does not, so an unmoved directory costs one fstat
  plus one fstatat per known file and no getdents (about half the pass).
  A listing is trusted only if it was complete and the key was at least
  _RACY_NS old (a change in the same timestamp tick would hide behind it),
  and every LIST_ALL_EVERY_S the pass lists everything, for filesystems
  whose directory mtimes lag.
- Pruned directories (tmp, testdata, hidden ones, exclude_dir) are never
  opened.

Tiers: files changed during this run and their directories form a small hot
set, checked every `hot_interval_s` (0.1 s) with one stat per hot file and
per hot directory; a hot directory is listed again only when its own
(mtime, inode) moved, or moved recently enough that a same-tick change could
hide. The full pass runs every `interval_s` when given, otherwise at an
interval adapted to the measured cost of a pass so the thread stays near a
1.5% CPU budget, kept between 0.5 s (Air's minimum) and 2 s.

Symlinks: a symlink to a file is watched through its target (stat follows
it); a symlink to a directory is descended only with follow_symlink, and
never when that directory is one of the link's own ancestors (a cycle).

Backend "inotify" (Linux, opt-in): the same thread waits in select() on an
inotify fd instead of polling, and each event is confirmed by listing or
stating through the same code as a pass, so both backends report the same
changes. When inotify is unavailable or the watch limit is hit, one warning
and back to polling.
"""

import errno
import logging
import os
import queue
import stat
import time
from collections import OrderedDict

from air_std.errors import ConfigError
from air_std.filters import PathFilter
from air_std.messages import ChangeBatch
from air_std.part import Part

__all__ = ["Watcher"]

log = logging.getLogger("air_std.watcher")

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_DIR_NOFOLLOW = _O_DIR | getattr(os, "O_NOFOLLOW", 0)
_S_ISDIR = stat.S_ISDIR
_M64 = (1 << 64) - 1
_thread_time = getattr(time, "thread_time", time.perf_counter)
_time_ns = time.time_ns

# Directory timestamps come from a coarse clock, so a change in the same tick
# as our listing leaves (mtime, inode) as it was. A directory whose mtime was
# this recent when listed is listed again on the next pass; the periodic
# list-everything pass is the safety net for anything else (clock skew on
# network filesystems).
_RACY_NS = 3000000000  # FAT keeps mtimes to 2 s, ext3 and HFS+ to 1 s

# Errors meaning "no directory here any more" (ELOOP: it became a symlink loop).
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)

MIN_INTERVAL_S = 0.5      # Air's minimum poll interval
MAX_INTERVAL_S = 2.0      # adaptive full pass: at least this often
CPU_BUDGET = 0.015        # adaptive full pass: share of one core, under 2% so
                          # the whole process (wakeups, hot passes) stays within it
LIST_ALL_EVERY_S = 10.0  # full pass: list even unchanged directories this often
HOT_DIRS_MAX = 32        # hot set caps: a hot pass costs at most this many stats
HOT_FILES_MAX = 128


class _Node:
    """One walked directory of the snapshot."""

    __slots__ = ("path", "prefix", "rule", "files", "children", "parent", "name", "alive",
                 "ident", "is_link", "dkey", "hashes", "wd")

    def __init__(self, path, rule, parent, name, is_link=False, ident=None):
        self.path = path                      # absolute, no trailing "/" (except "/")
        self.prefix = path if path.endswith("/") else path + "/"
        self.rule = rule                      # filters.DirRule
        self.files = {}                       # name -> _key(stat)
        self.children = {}                    # name -> _Node
        self.parent = parent
        self.name = name
        self.alive = True
        self.ident = ident                    # (st_dev, st_ino), kept with follow_symlink
        self.is_link = is_link                # reached through a symlink
        self.dkey = None                      # (mtime_ns, ino) of the dir at its last hot listing
        self.hashes = None                    # name -> digest, with exclude_unchanged
        self.wd = None                        # inotify watch descriptor


class _Changes:
    """What one pass found: absolute paths, and the directories it created."""

    __slots__ = ("created", "modified", "deleted", "new_dirs")

    def __init__(self):
        self.created = []    # absolute paths
        self.modified = []
        self.deleted = []
        self.new_dirs = []   # _Node objects created by this pass

    def batch(self):
        if not (self.created or self.modified or self.deleted):
            return None
        return ChangeBatch(tuple(sorted(self.created)), tuple(sorted(self.modified)),
                           tuple(sorted(self.deleted)))


class Watcher(Part):
    """Watches the tree under `root_path` and puts ChangeBatch objects on `out_queue`.

    Thread use: construct and `start()` in the engine's thread; the thread
    "air-watcher" then owns the snapshot. `stop()` is safe from any thread and
    never blocks; `join(timeout)` waits for the thread. `poll_once()`,
    `poll_hot()` and `poll_events()` are for callers that run no thread
    (tests, benchmarks) and must not be used while the thread runs.
    """

    def __init__(self, root_path, filters, out_queue, shutdown_event, interval_s=None,
                 follow_symlink=False, exclude_unchanged=False, hot_interval_s=0.1,
                 backend="poll", max_watches=None, on_crash=None):
        """root_path: the tree to watch; filters: a PathFilter; out_queue gets one
        ChangeBatch per pass with changes; shutdown_event is set if the thread
        crashes. interval_s: full-pass period in seconds, None to adapt it to the
        CPU budget. hot_interval_s: period of the hot tier. backend: "poll" or
        "inotify". max_watches: cap on inotify watches below the kernel's limit
        (beyond it: one warning and back to polling; tests use a small cap).
        on_crash: optional callable(name) told when the thread crashes (the
        engine wakes its main thread with it); the attribute may be set later."""
        if backend not in ("poll", "inotify"):
            raise ConfigError("build.watcher: expected \"poll\" or \"inotify\", got %r"
                              % (backend,))
        super().__init__("air-watcher", shutdown_event, on_crash)
        root = os.path.abspath(root_path)
        self.root_path = root
        self.filters = filters
        self._queue = out_queue
        self.interval_s = interval_s
        self.follow_symlink = bool(follow_symlink)
        self.exclude_unchanged = bool(exclude_unchanged)
        self.hot_interval_s = hot_interval_s
        self.backend = backend
        self.max_watches = max_watches
        self.full_interval_s = interval_s if interval_s else MIN_INTERVAL_S
        self.last_full_cpu_s = 0.0
        self._root = None                # the snapshot tree, once the baseline is taken
        self._hot_dirs = OrderedDict()   # dir path -> _Node
        self._hot_files = OrderedDict()  # (dir path, name) -> _Node
        self._warned = set()             # paths already warned about
        self._ino = None                 # inotify.Inotify while that backend is on
        self._wd_nodes = {}              # watch descriptor -> [_Node]
        self._link_nodes = set()         # nodes whose directory holds symlinks
        self._listing_all = False        # this pass lists directories whose key held
        self.last_pass_listed_all = False
        self._next_list_all = 0.0        # monotonic time of the next such pass

    @classmethod
    def from_config(cls, cfg, out_queue, shutdown_event, **kwargs):
        """Build from a Config: build.{include_*, exclude_*, follow_symlink,
        exclude_unchanged, poll, poll_interval_s} and the air_std key
        build.watcher ("poll" or "inotify"; absent means "poll")."""
        b = cfg.build
        backend = getattr(b, "watcher", "poll") or "poll"
        if getattr(b, "poll", False):
            backend = "poll"  # Air: poll = true forces polling
        kw = dict(interval_s=getattr(b, "poll_interval_s", None),
                  follow_symlink=getattr(b, "follow_symlink", False),
                  exclude_unchanged=getattr(b, "exclude_unchanged", False),
                  backend=backend)
        kw.update(kwargs)
        return cls(cfg.root_path, PathFilter.from_config(cfg), out_queue, shutdown_event, **kw)

    # -- lifecycle -----------------------------------------------------------

    def start(self):
        """Take the baseline snapshot now, then start the thread; returns at once after."""
        if self._root is None:
            self._baseline()
        files, dirs = self.counts()
        log.info("watching %d files in %d directories (%s)", files, dirs, self._describe())
        super().start()

    def close(self):
        """Release the inotify fd (the thread does this itself when it ends)."""
        self._close_inotify()

    # -- one pass, no thread ---------------------------------------------------

    def poll_once(self):
        """One full pass. The first call takes the baseline and returns None."""
        if self._root is None:
            self._baseline()
            return None
        return self._finish(self._full_pass())

    def poll_hot(self):
        """One pass over the hot set only (files changed during this run)."""
        if self._root is None:
            self._baseline()
            return None
        return self._finish(self._hot_pass())

    def poll_events(self, timeout_s=0.0):
        """inotify backend: wait up to timeout_s for events and apply them."""
        if self._root is None:
            self._baseline()
            return None
        if self._ino is None:
            return None
        out = self._inotify_step(timeout_s)
        return None if out is None else self._finish(out)

    def counts(self):
        """(watched files, walked directories) in the snapshot."""
        files = dirs = 0
        stack = [self._root] if self._root is not None else []
        while stack:
            node = stack.pop()
            dirs += 1
            files += len(node.files)
            stack.extend(node.children.values())
        return files, dirs

    def snapshot(self):
        """{absolute path: (mtime_ns, size, ino)} of every watched file (tests)."""
        out = {}
        stack = [self._root] if self._root is not None else []
        while stack:
            node = stack.pop()
            for name, key in node.files.items():
                out[node.prefix + name] = _unkey(key)
            stack.extend(node.children.values())
        return out

    @property
    def active_backend(self):
        return "inotify" if self._ino is not None else "poll"

    # -- the thread ------------------------------------------------------------

    def run(self):
        try:
            if self._ino is not None:
                self._run_inotify()
            self._run_poll()
        finally:
            self._close_inotify()

    def _sleep_until(self, deadline):
        """Wait on the stop Event until `deadline`; True when asked to stop."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return self.should_stop
        return self.stop_event.wait(remaining)

    def _run_poll(self):
        now = time.monotonic()
        next_full = now + self.full_interval_s
        next_hot = now + self.hot_interval_s
        while not self.should_stop:
            deadline = min(next_full, next_hot) if self._hot_dirs else next_full
            if self._sleep_until(deadline):
                return
            now = time.monotonic()
            if now >= next_full:
                t0 = _thread_time()
                out = self._full_pass()
                if not self.last_pass_listed_all:  # that rare pass is not the norm
                    self._adapt(_thread_time() - t0)
                now = time.monotonic()
                next_full = now + self.full_interval_s
                next_hot = now + self.hot_interval_s
            else:
                out = self._hot_pass()
                next_hot = now + self.hot_interval_s
            self._emit(self._finish(out))

    def _adapt(self, cpu_s):
        """Next full-pass interval: fixed when configured, else cost / budget in [0.5, 2] s."""
        self.last_full_cpu_s = cpu_s
        if self.interval_s:
            self.full_interval_s = self.interval_s
            return
        self.full_interval_s = max(MIN_INTERVAL_S, min(MAX_INTERVAL_S, cpu_s / CPU_BUDGET))

    def _emit(self, batch):
        if not batch:
            return
        while True:
            try:
                self._queue.put(batch, timeout=0.5)
                return
            except queue.Full:  # a bounded queue and a busy runner: retry unless stopping
                if self.should_stop:
                    return

    def _finish(self, out):
        batch = out.batch()
        self._heat(out)
        if batch and log.isEnabledFor(logging.DEBUG):
            for kind, paths in (("created", batch.created), ("modified", batch.modified),
                                ("deleted", batch.deleted)):
                for p in paths:
                    log.debug("%s %s", kind, os.path.relpath(p, self.root_path))
        return batch

    def _describe(self):
        if self._ino is not None:
            return "inotify"
        if self.interval_s:
            return "polling every %gs, hot files every %gs" % (self.interval_s, self.hot_interval_s)
        return "polling, adaptive interval %g-%gs, hot files every %gs" % (
            MIN_INTERVAL_S, MAX_INTERVAL_S, self.hot_interval_s)

    # -- passes ----------------------------------------------------------------

    def _baseline(self):
        root = _Node(self.root_path, self.filters.root_rule(), None, "")
        self._root = root
        if self.backend == "inotify":
            self._open_inotify()
        t0 = _thread_time()
        stack = [(root, True)]
        while stack:
            node, recurse = stack.pop()
            self._scan_dir(node, None, recurse, stack)
        self._adapt(_thread_time() - t0)
        self._next_list_all = time.monotonic() + LIST_ALL_EVERY_S

    def _full_pass(self, out=None):
        if out is None:
            out = _Changes()
        # A directory whose (mtime, inode) held since its last listing is not
        # listed again, only its known files are stat'ed; every LIST_ALL_EVERY_S
        # all are listed anyway, for filesystems that do not move a directory's
        # mtime reliably.
        now = time.monotonic()
        self._listing_all = now >= self._next_list_all
        if self._listing_all:
            self._next_list_all = now + LIST_ALL_EVERY_S
        stack = [(self._root, True)]
        while stack:
            node, recurse = stack.pop()
            self._scan_dir(node, out, recurse, stack)
        self.last_pass_listed_all, self._listing_all = self._listing_all, False
        return out

    def _hot_pass(self):
        out = _Changes()
        stack = []
        listed = set()
        for path, node in sorted(self._hot_dirs.items(), key=_depth_of_path):
            if not node.alive:
                del self._hot_dirs[path]
                continue
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None or (st.st_mtime_ns, st.st_ino) != node.dkey:
                self._scan_dir(node, out, False, stack)  # records the new key
                listed.add(node)
        for (path, name), node in list(self._hot_files.items()):
            if not node.alive:
                del self._hot_files[(path, name)]
            elif node not in listed and self._check_file(node, name, out, stack):
                listed.add(node)
        while stack:
            node, recurse = stack.pop()
            self._scan_dir(node, out, recurse, stack)
        return out

    def _heat(self, out):
        """Make the directories and files of this pass's changes hot (LRU, capped
        so a hot pass stays a few hundred stats at most)."""
        if self._ino is not None:
            return
        for node in out.new_dirs:
            self._heat_dir(node.path, node)
        for paths, is_file in ((out.created, True), (out.modified, True), (out.deleted, False)):
            for p in paths:
                d, _, name = p.rpartition("/")
                d = d or "/"
                node = self._node_at(d)
                if node is None:
                    continue
                self._heat_dir(d, node)
                if is_file:
                    key = (d, name)
                    self._hot_files[key] = node
                    self._hot_files.move_to_end(key)
                    if len(self._hot_files) > HOT_FILES_MAX:
                        self._hot_files.popitem(last=False)

    def _heat_dir(self, path, node):
        hot = self._hot_dirs
        if hot.get(path) is not node:
            hot[path] = node  # node.dkey, from its last listing, holds for the hot pass too
        hot.move_to_end(path)
        if len(hot) > HOT_DIRS_MAX:
            hot.popitem(last=False)

    def _node_at(self, path):
        root = self._root
        if root is None:
            return None
        if path == root.path:
            return root
        if not path.startswith(root.prefix):
            return None
        node = root
        for part in path[len(root.prefix):].split("/"):
            node = node.children.get(part)
            if node is None:
                return None
        return node

    # -- the scan of one directory (the hot loop) -------------------------------

    def _scan_dir(self, node, out, recurse, stack):
        """List one directory and diff it against its node in place.

        New subdirectories are pushed on `stack` to be scanned whole; known
        ones only when `recurse`. `out` is None for the baseline.
        """
        if not node.alive:  # dropped since it was queued
            return
        path = node.path
        if self._ino is not None:
            self._watch(node)
        try:
            # O_NOFOLLOW: a real directory replaced by a symlink is a change
            # for the parent's listing to sort out, not something to follow.
            # (The root itself may be a symlink: that one is followed.)
            fd = os.open(path, _O_DIR if node.is_link or node.parent is None else _O_DIR_NOFOLLOW)
        except OSError as e:
            self._unreadable(node, e, out, stack)
            return
        try:
            st = os.fstat(fd)
            if self.follow_symlink:
                ident = (st.st_dev, st.st_ino)
                if node.is_link and ident != node.ident and node.parent is not None:
                    # The symlink now leads elsewhere, maybe into a loop: the
                    # parent's listing checks that and rescans this node.
                    self._scan_dir(node.parent, out, False, stack)
                    return
                node.ident = ident
            dkey = (st.st_mtime_ns, st.st_ino)
            if (dkey == node.dkey and not self._listing_all and self._ino is None
                    and node not in self._link_nodes and self._stat_known(node, fd, out)):
                if recurse:
                    stack.extend([(child, True) for child in node.children.values()])
                return
            # The key is taken before the listing and kept only if the listing
            # was complete and the mtime settled: a change in the same timestamp
            # tick could hide behind a recent one (or one in the future).
            settled = _time_ns() - st.st_mtime_ns >= _RACY_NS
            node.dkey = None
            clean = True
            try:
                with os.scandir(fd) as it:
                    ents = list(it)
            except OSError as e:
                self._unreadable(node, e, out, stack)
                return
            files = node.files
            get = files.get
            accept = node.rule.accept
            children = node.children
            n_files = len(files)
            seen_files = 0
            kids_seen = []
            links = 0
            hashing = self.exclude_unchanged
            fast = self._ino is None  # inotify mode wants every symlink seen (see _link_nodes)
            for e in ents:
                name = e.name
                old = get(name)
                if old is not None and fast:
                    # A known file costs one stat and one compare; its type is
                    # looked at only when the key moved: a new inode is a new
                    # object. (An empty directory that took over the same inode
                    # number, size and mtime tick goes unseen until it changes.)
                    try:
                        st = e.stat()
                        key = (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns
                    except OSError:
                        key = None
                        clean = False
                    if key == old:
                        seen_files += 1
                        continue
                # Two cheap d_type checks, symlinks first so is_dir() never stats.
                if e.is_symlink():
                    links += 1
                    d = self._link_entry(node, e, out, recurse, stack, kids_seen)
                    if d > 0:
                        seen_files += 1
                    elif d < 0:
                        n_files -= 1
                    continue
                if e.is_dir():
                    if old is not None:  # a watched file was replaced by a directory
                        self._drop_file(node, name, out)
                        n_files -= 1
                    child = children.get(name)
                    if child is None:
                        child = self._new_child(node, name, out)
                        if child is None:
                            continue
                        stack.append((child, True))
                    elif child.is_link:
                        # A symlink replaced by a real directory: same path, so
                        # keep the node and let the scan diff its files by name.
                        child.is_link = False
                        stack.append((child, True))
                    elif recurse:
                        stack.append((child, True))
                    kids_seen.append(name)
                    continue
                if old is None:
                    if not accept(name):
                        continue
                    try:
                        st = e.stat()
                    except OSError:  # gone since the listing, or not ours to stat
                        clean = False
                        continue
                    files[name] = (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns
                    if out is not None:
                        out.created.append(node.prefix + name)
                    if hashing:
                        self._store_hash(node, name)
                    continue
                try:
                    st = e.stat()
                except OSError:  # gone since the listing, or not ours to stat
                    clean = False
                    self._drop_file(node, name, out)
                    n_files -= 1
                    continue
                seen_files += 1
                key = (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns
                if key != old:  # != not >: a restored older mtime is a change too
                    self._modified(node, name, key, out)
            if seen_files != n_files:
                listed = {e.name for e in ents}
                for name in [n for n in files if n not in listed]:
                    self._drop_file(node, name, out)
            if len(kids_seen) != len(children):
                keep = set(kids_seen)
                for name in [n for n in children if n not in keep]:
                    self._drop_child(node, name, out)
            if not links and node in self._link_nodes:
                self._link_nodes.discard(node)
            if clean and settled:
                node.dkey = dkey
        finally:
            os.close(fd)

    def _stat_known(self, node, fd, out):
        """A directory whose listing cannot have changed: one stat per known
        file. False (and nothing recorded) when a file is gone or is no longer
        a file, which the caller's full listing then sorts out."""
        moved = None
        for name, old in node.files.items():
            try:
                st = os.stat(name, dir_fd=fd)
            except OSError:
                return False
            key = (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns
            if key != old:
                if _S_ISDIR(st.st_mode):
                    return False
                if moved is None:
                    moved = []
                moved.append((name, key))
        if moved:
            for name, key in moved:
                self._modified(node, name, key, out)
        return True

    def _link_entry(self, node, e, out, recurse, stack, kids_seen):
        """A symlink entry. Returns 1 when a known file was confirmed, -1 when
        a known file was dropped, else 0."""
        name = e.name
        files = node.files
        old = files.get(name)
        if old is None and not self.follow_symlink and not node.rule.accept(name):
            return 0  # decided from the name: no stat
        self._link_nodes.add(node)
        try:
            st = e.stat()  # follows the link
        except OSError:  # dangling, a loop, or gone
            if old is not None:
                self._drop_file(node, name, out)
                return -1
            return 0
        if _S_ISDIR(st.st_mode):
            r = 0
            if old is not None:
                self._drop_file(node, name, out)
                r = -1
            if not self.follow_symlink:
                return r
            ident = (st.st_dev, st.st_ino)
            child = node.children.get(name)
            if self._is_cycle(node, ident):
                if child is not None:
                    self._drop_child(node, name, out)
                key = "loop:" + node.prefix + name
                if key not in self._warned:
                    self._warned.add(key)
                    log.debug("not following %s: it loops back to a parent directory",
                              node.prefix + name)
                return r
            if child is None:
                child = self._new_child(node, name, out, is_link=True, ident=ident)
                if child is None:
                    return r
                stack.append((child, True))
            elif not child.is_link or child.ident != ident:
                # Same path, different directory behind it (a real dir became a
                # link, or the link was retargeted): keep the node so its files
                # are diffed by name, and scan the whole subtree again.
                child.is_link = True
                child.ident = ident
                stack.append((child, True))
            elif recurse:
                stack.append((child, True))
            kids_seen.append(name)
            return r
        key = _key(st)
        if old is None:
            if not node.rule.accept(name):
                return 0
            files[name] = key
            if out is not None:
                out.created.append(node.prefix + name)
            if self.exclude_unchanged:
                self._store_hash(node, name)
            return 0
        if old != key:
            self._modified(node, name, key, out)
        return 1

    def _is_cycle(self, node, ident):
        n = node
        while n is not None:
            if n.ident == ident:
                return True
            n = n.parent
        return False

    def _check_file(self, node, name, out, stack):
        """Stat one known file. Anything unusual (gone, now a directory) lists
        the whole directory instead; returns True when it did that."""
        old = node.files.get(name)
        if old is None:
            return False
        try:
            st = os.stat(node.prefix + name)
        except OSError:
            st = None
        if st is None or _S_ISDIR(st.st_mode):
            node.dkey = None  # list it, whatever its mtime says
            self._scan_dir(node, out, False, stack)
            return True
        key = _key(st)
        if old != key:
            self._modified(node, name, key, out)
        return False

    # -- snapshot edits ----------------------------------------------------------

    def _modified(self, node, name, key, out):
        node.files[name] = key
        if self.exclude_unchanged:
            old = node.hashes.get(name) if node.hashes is not None else None
            new = self._store_hash(node, name)
            if old is not None and new == old:
                return  # only the stat changed; Air's exclude_unchanged skips it
        if out is not None:
            out.modified.append(node.prefix + name)

    def _drop_file(self, node, name, out):
        del node.files[name]
        if node.hashes is not None:
            node.hashes.pop(name, None)
        if out is not None:
            out.deleted.append(node.prefix + name)

    def _new_child(self, node, name, out, is_link=False, ident=None):
        rule = self.filters.dir_rule(node.rule, name)
        if rule is None:
            return None
        child = _Node(node.prefix + name, rule, node, name, is_link, ident)
        node.children[name] = child
        if out is not None:
            out.new_dirs.append(child)
        return child

    def _drop_child(self, node, name, out):
        """Forget a directory that is gone: all its files are deleted."""
        stack = [node.children.pop(name)]
        while stack:
            n = stack.pop()
            n.alive = False
            for fname in n.files:
                if out is not None:
                    out.deleted.append(n.prefix + fname)
            n.files = {}
            n.hashes = None
            stack.extend(n.children.values())
            n.children = {}
            self._link_nodes.discard(n)
            if n.wd is not None:
                self._unwatch(n)

    def _unreadable(self, node, e, out, stack):
        node.dkey = None  # whatever comes back at this path must be listed
        if e.errno in _GONE:
            parent = node.parent
            if parent is not None:
                # Whatever is at this path now (nothing, a file, a symlink to
                # follow, a new directory), the parent's listing decides it.
                if parent.children.get(node.name) is node:
                    parent.dkey = None  # list it, whatever its mtime says
                    self._scan_dir(parent, out, False, stack)
            else:  # the root itself is gone: everything under it is deleted
                for name in list(node.files):
                    self._drop_file(node, name, out)
                for name in list(node.children):
                    self._drop_child(node, name, out)
            return
        # Permission denied and the like: keep what we knew, warn once per
        # directory (werkzeug remembers failed paths the same way).
        if node.path not in self._warned:
            self._warned.add(node.path)
            log.warning("cannot read directory %s (%s); its files are not watched",
                        os.path.relpath(node.path, self.root_path), e.strerror or e)

    def _store_hash(self, node, name):
        digest = _file_hash(node.prefix + name)
        if node.hashes is None:
            node.hashes = {}
        if digest is None:
            node.hashes.pop(name, None)
        else:
            node.hashes[name] = digest
        return digest

    # -- inotify backend -----------------------------------------------------------

    def _open_inotify(self):
        try:
            from air_std import inotify
            self._ino = inotify.Inotify()
        except (OSError, ImportError, AttributeError) as e:
            self._fallback("inotify is unavailable here (%s)" % (e,))

    def _fallback(self, why):
        log.warning("%s; falling back to polling", why)
        self._close_inotify()
        self.backend = "poll"

    def _close_inotify(self):
        ino = self._ino
        self._ino = None
        if ino is not None:
            ino.close()
        if self._wd_nodes:
            self._wd_nodes = {}
            stack = [self._root] if self._root is not None else []
            while stack:
                n = stack.pop()
                n.wd = None
                stack.extend(n.children.values())

    def _watch(self, node):
        """Add (or refresh) the watch of a directory before it is listed, so
        nothing created after the listing can be missed."""
        ino = self._ino
        cap = self.max_watches
        if cap is not None and node.wd is None and len(self._wd_nodes) >= cap:
            self._fallback("inotify watch limit (%d) reached" % cap)
            return
        try:
            wd = ino.add_watch(node.path, follow=node.is_link or node.parent is None)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._fallback("inotify watch limit reached (raise fs.inotify.max_user_watches)")
            elif e.errno not in _GONE and e.errno not in (errno.EACCES, errno.EPERM):
                self._fallback("inotify_add_watch failed on %s (%s)" % (node.path, e))
            return
        if wd == node.wd:
            return
        if node.wd is not None:
            self._unwatch(node)
        node.wd = wd
        self._wd_nodes.setdefault(wd, []).append(node)

    def _unwatch(self, node):
        wd = node.wd
        node.wd = None
        nodes = self._wd_nodes.get(wd)
        if nodes is None:
            return
        if node in nodes:
            nodes.remove(node)
        if not nodes:
            del self._wd_nodes[wd]
            if self._ino is not None:
                self._ino.rm_watch(wd)

    def _run_inotify(self):
        while not self.should_stop and self._ino is not None:
            out = self._inotify_step(0.5)
            if out is not None:
                self._emit(self._finish(out))

    def _inotify_step(self, timeout_s):
        from air_std import inotify as ino_mod
        events = self._ino.read_events(timeout_s)
        if not events and not self._link_nodes:
            return None
        out = _Changes()
        stack = []
        dirty = OrderedDict()  # node -> None (list it) or set of names to stat
        overflow = False
        for wd, mask, _cookie, name in events:
            if mask & ino_mod.IN_Q_OVERFLOW:
                overflow = True
                continue
            if mask & ino_mod.IN_IGNORED:
                for n in self._wd_nodes.pop(wd, ()):
                    n.wd = None
                    dirty[n] = None
                continue
            content_only = name and not (mask & (ino_mod.STRUCTURE | ino_mod.IN_ISDIR))
            for n in self._wd_nodes.get(wd, ()):
                if not n.alive:
                    continue
                if not content_only:
                    dirty[n] = None  # entries came or went: list the directory
                elif n not in dirty:
                    dirty[n] = {name}
                elif dirty[n] is not None:
                    dirty[n].add(name)
        if overflow:
            log.debug("inotify queue overflowed; doing a full pass")
            return self._full_pass()
        # A symlink's target may live in a directory we do not watch (pruned,
        # or outside the root), so no event would tell us about it: list every
        # directory holding symlinks again, on each event and each timeout.
        for n in list(self._link_nodes):
            if n.alive:
                dirty[n] = None
            else:
                self._link_nodes.discard(n)
        # Parents first: a parent's listing may drop or replace a child.
        for n, names in sorted(dirty.items(), key=_depth):
            if not n.alive:
                continue
            if names is None:
                self._scan_dir(n, out, False, stack)
            else:
                for name in names:
                    if self._check_file(n, name, out, stack):
                        break
        while stack:
            n, recurse = stack.pop()
            self._scan_dir(n, out, recurse, stack)
        if self._ino is None:  # fell back to polling mid-way: catch up with a full pass
            self._full_pass(out)
        return out


def _key(st):
    """(st_mtime_ns, st_size, st_ino) as one int: one compare, and about a third
    of the memory of a 3-tuple of ints (issue 5's 40 MB for 100k files). It is
    one-to-one because |mtime_ns| < 2**63 and size < 2**64; "+" rather than
    "|" keeps negative (pre-1970) mtimes apart without a mask. The scan loop
    inlines the same expression."""
    return (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns


def _unkey(key):
    m = key & _M64
    if m >= 1 << 63:  # a negative mtime borrowed from the fields above it
        m -= 1 << 64
    rest = (key - m) >> 64
    return m, rest & _M64, rest >> 64


def _depth(item):
    return item[0].path.count("/")


def _depth_of_path(item):
    return item[0].count("/")


def _file_hash(path):
    """blake2b of the content, or None when it cannot be read."""
    # Imported here: hashlib costs ~3.7 MB of RSS (OpenSSL) and only
    # exclude_unchanged needs it.
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
    except OSError:
        return None
    return h.digest()

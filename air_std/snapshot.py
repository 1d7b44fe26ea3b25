"""The watcher's model of the tree, and the scan that brings it up to date.
The trees, rather: root, and each include_dir outside root (`Snapshot.trees`).

Used by the watcher thread ("air-watcher") through its driver (polling or
inotify); tests also use it with no thread at all. Nothing here knows which
driver runs it: what a pass may skip, and whether each listed directory is
watched first, come with the pass (`ScanPass`).

How a pass stays cheap:
- The snapshot is a tree of `Node`s, one per walked directory, each with
  `files: {name: key}` where key packs (st_mtime_ns, st_size, st_ino) into one
  int (see file_key), compared in place; an unchanged directory allocates
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
  _RACY_NS old (a change in the same timestamp tick would hide behind it).
  A pass with `list_all` lists every directory anyway (the polling driver
  asks for one now and then, for filesystems whose directory mtimes lag).
- Pruned directories (tmp, testdata, hidden ones, exclude_dir) are never
  opened.

Symlinks: a symlink to a file is watched through its target (stat follows
it); a symlink to a directory is descended only with follow_symlink, and
never when that directory is one of the link's own ancestors (a cycle).
"""

import errno
import logging
import os
import stat
import time

from air_std.treenode import Node, ScanPass, file_key, store_hash, unpack_key

__all__ = ["Node", "ScanPass", "Snapshot", "file_key", "unpack_key", "GONE_ERRNOS"]

log = logging.getLogger("air_std.watcher")

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_DIR_NOFOLLOW = _O_DIR | getattr(os, "O_NOFOLLOW", 0)
_S_ISDIR = stat.S_ISDIR
_time_ns = time.time_ns

# Directory timestamps come from a coarse clock, so a change in the same tick
# as our listing leaves (mtime, inode) as it was. A directory whose mtime was
# this recent when listed is listed again on the next pass; the polling
# driver's periodic list-everything pass is the safety net for anything else
# (clock skew on network filesystems).
_RACY_NS = 3000000000  # FAT keeps mtimes to 2 s, ext3 and HFS+ to 1 s

# Errors meaning "no directory here any more" (ELOOP: it became a symlink loop).
GONE_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class Snapshot:
    """The watched files under the root and under each include_dir outside
    it, kept up to date pass by pass.

    `trees` lists the top Node of every tree walked, root first: drivers that
    treat trees apart (a watch per filesystem, say) read it. Only one thread
    may use a snapshot at a time (the watcher thread once started).
    """

    def __init__(self, root_path, filters, follow_symlink=False, exclude_unchanged=False):
        """root_path: absolute; filters: a filters.PathFilter. follow_symlink:
        descend symlinks to directories. exclude_unchanged: a file whose
        content hash held is not reported as modified (Air's key)."""
        self.root_path = root_path
        self.filters = filters
        self.follow_symlink = bool(follow_symlink)
        self.exclude_unchanged = bool(exclude_unchanged)
        self.root = Node(root_path, filters.root_rule(), None, "")
        self.trees = [self.root]
        for tree in filters.trees[1:]:
            path = os.path.normpath(os.path.join(root_path, tree.rel))
            if os.path.isdir(path):
                self.trees.append(Node(path, filters.tree_rule(tree.rel), None, ""))
            else:
                # Air (engine.go, watchConfiguredDirs) logs and skips it too
                log.warning("%s: %s does not exist or is not a directory; not watched",
                            tree.key, tree.rel)
        # Directories holding symlinks. A link's target may change where no
        # directory mtime moves (and where no inotify watch sees it), so these
        # are always listed.
        self.link_dirs = set()
        self._warned = set()  # paths already warned about

    # -- passes -------------------------------------------------------------------

    def scan_tree(self, scan):
        """Scan every directory of every tree, in the way `scan` asks."""
        scan.pending.extend([(top, True) for top in self.trees])
        self.drain(scan)

    def drain(self, scan):
        """Scan the directories still pending in `scan` (new ones, whole)."""
        pending = scan.pending
        while pending:
            node, recurse = pending.pop()
            self.scan_dir(node, scan, recurse)

    def scan_dir(self, node, scan, recurse=False):
        """Bring one directory up to date, in place.

        New subdirectories go on scan.pending to be scanned whole; known ones
        only when `recurse`. A directory whose (mtime, inode) held since its
        last trusted listing is not listed: its known files are stat'ed.
        """
        if not node.alive:  # dropped since it was queued
            return
        try:
            # O_NOFOLLOW: a real directory replaced by a symlink is a change
            # for the parent's listing to sort out, not something to follow.
            # (The root itself may be a symlink: that one is followed.)
            fd = os.open(node.path,
                         _O_DIR if node.is_link or node.parent is None else _O_DIR_NOFOLLOW)
        except OSError as e:
            self._unreadable(node, e, scan)
            return
        try:
            st = os.fstat(fd)
            if self.follow_symlink:
                ident = (st.st_dev, st.st_ino)
                if node.is_link and ident != node.ident and node.parent is not None:
                    # The symlink now leads elsewhere, maybe into a loop: the
                    # parent's listing checks that and rescans this node.
                    self.scan_dir(node.parent, scan)
                    return
                node.ident = ident
            dkey = (st.st_ino << 64) + st.st_mtime_ns  # dir_key(st), inlined
            if (dkey == node.dkey and not scan.list_all and node not in self.link_dirs
                    and self._stat_known(node, fd, scan)):
                if recurse:
                    scan.pending.extend([(child, True) for child in node.children.values()])
                return
            # The key is taken before the listing and kept only if the listing
            # was complete and the mtime settled: a change in the same timestamp
            # tick could hide behind a recent one (or one in the future).
            settled = _time_ns() - st.st_mtime_ns >= _RACY_NS
            node.dkey = None
            if scan.watches is not None:
                # Watched before it is listed, so nothing created after the
                # listing is missed. A directory that is not listed keeps the
                # watch it has: re-adding costs a syscall per directory, a
                # tenth of a safety-net pass.
                scan.watches.add(node)
            try:
                with os.scandir(fd) as it:
                    entries = list(it)
            except OSError as e:
                self._unreadable(node, e, scan)
                return
            if self._diff_listing(node, entries, scan, recurse) and settled:
                node.dkey = dkey
        finally:
            os.close(fd)

    def _diff_listing(self, node, entries, scan, recurse):
        """Diff a directory's entries against its node (the hot loop: one call
        per directory, none per entry on the common paths). True when every
        entry could be judged, so the listing may be trusted later."""
        clean = True
        files = node.files
        get = files.get
        accept = node.rule.accept
        children = node.children
        pending = scan.pending
        created = scan.created
        n_files = len(files)
        seen_files = 0
        kids_seen = []
        links = 0
        hashing = self.exclude_unchanged
        # With watches (inotify) every symlink must reach _link_entry, which
        # keeps link_dirs complete; polling may skip a known file whose key held.
        fast = scan.watches is None
        for e in entries:
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
                d = self._link_entry(node, e, scan, recurse, kids_seen)
                if d > 0:
                    seen_files += 1
                elif d < 0:
                    n_files -= 1
                continue
            if e.is_dir():
                if old is not None:  # a watched file was replaced by a directory
                    scan.drop_file(node, name)
                    n_files -= 1
                child = children.get(name)
                if child is None:
                    child = scan.add_dir(node, name)
                    if child is None:
                        continue
                    pending.append((child, True))
                elif child.is_link:
                    # A symlink replaced by a real directory: same path, so
                    # keep the node and let the scan diff its files by name.
                    child.is_link = False
                    pending.append((child, True))
                elif recurse:
                    pending.append((child, True))
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
                if created is not None:
                    created.append(node.prefix + name)
                if hashing:
                    store_hash(node, name)
                continue
            try:
                st = e.stat()
            except OSError:  # gone since the listing, or not ours to stat
                clean = False
                scan.drop_file(node, name)
                n_files -= 1
                continue
            seen_files += 1
            key = (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns
            if key != old:  # != not >: a restored older mtime is a change too
                scan.update_file(node, name, key)
        if seen_files != n_files:
            listed = {e.name for e in entries}
            for name in [n for n in files if n not in listed]:
                scan.drop_file(node, name)
        if len(kids_seen) != len(children):
            keep = set(kids_seen)
            for name in [n for n in children if n not in keep]:
                scan.drop_dir(node, name)
        if not links and node in self.link_dirs:
            self.link_dirs.discard(node)
        return clean

    def _stat_known(self, node, fd, scan):
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
                scan.update_file(node, name, key)
        return True

    def _link_entry(self, node, e, scan, recurse, kids_seen):
        """A symlink entry. Returns 1 when a known file was confirmed, -1 when
        a known file was dropped, else 0."""
        name = e.name
        files = node.files
        old = files.get(name)
        if old is None and not self.follow_symlink and not node.rule.accept(name):
            return 0  # decided from the name: no stat
        self.link_dirs.add(node)
        try:
            st = e.stat()  # follows the link
        except OSError:  # dangling, a loop, or gone
            if old is not None:
                scan.drop_file(node, name)
                return -1
            return 0
        if _S_ISDIR(st.st_mode):
            r = 0
            if old is not None:
                scan.drop_file(node, name)
                r = -1
            if self.follow_symlink:
                self._link_to_dir(node, name, (st.st_dev, st.st_ino), scan, recurse, kids_seen)
            return r
        key = file_key(st)
        if old is None:
            if not node.rule.accept(name):
                return 0
            files[name] = key
            if scan.created is not None:
                scan.created.append(node.prefix + name)
            if self.exclude_unchanged:
                store_hash(node, name)
            return 0
        if old != key:
            scan.update_file(node, name, key)
        return 1

    def _link_to_dir(self, node, name, ident, scan, recurse, kids_seen):
        """A symlink to a directory, with follow_symlink: descend it unless it
        loops back to one of its ancestors."""
        child = node.children.get(name)
        if self._is_cycle(node, ident):
            if child is not None:
                scan.drop_dir(node, name)
            warn_key = "loop:" + node.prefix + name
            if warn_key not in self._warned:
                self._warned.add(warn_key)
                log.debug("not following %s: it loops back to a parent directory",
                          node.prefix + name)
            return
        if child is None:
            child = scan.add_dir(node, name, is_link=True, ident=ident)
            if child is None:
                return
            scan.pending.append((child, True))
        elif not child.is_link or child.ident != ident:
            # Same path, different directory behind it (a real dir became a
            # link, or the link was retargeted): keep the node so its files
            # are diffed by name, and scan the whole subtree again.
            child.is_link = True
            child.ident = ident
            scan.pending.append((child, True))
        elif recurse:
            scan.pending.append((child, True))
        kids_seen.append(name)

    @staticmethod
    def _is_cycle(node, ident):
        n = node
        while n is not None:
            if n.ident == ident:
                return True
            n = n.parent
        return False

    def check_file(self, node, name, scan):
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
            self.scan_dir(node, scan)
            return True
        key = file_key(st)
        if old != key:
            scan.update_file(node, name, key)
        return False

    def _unreadable(self, node, e, scan):
        node.dkey = None  # whatever comes back at this path must be listed
        if e.errno in GONE_ERRNOS:
            parent = node.parent
            if parent is not None:
                # Whatever is at this path now (nothing, a file, a symlink to
                # follow, a new directory), the parent's listing decides it.
                if parent.children.get(node.name) is node:
                    parent.dkey = None  # list it, whatever its mtime says
                    self.scan_dir(parent, scan)
            else:  # the root itself is gone: everything under it is deleted
                for name in list(node.files):
                    scan.drop_file(node, name)
                for name in list(node.children):
                    scan.drop_dir(node, name)
            return
        # Permission denied and the like: keep what we knew, warn once per
        # directory (a directory that stays unreadable would warn every pass).
        if node.path not in self._warned:
            self._warned.add(node.path)
            log.warning("cannot read directory %s (%s); its files are not watched",
                        os.path.relpath(node.path, self.root_path), e.strerror or e)

    # -- reading the snapshot ----------------------------------------------------------

    def nodes(self):
        """Every directory node, parents before their children."""
        stack = list(self.trees)
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def node_at(self, path):
        """The node of the walked directory at absolute `path`, or None."""
        for top in self.trees:
            if path == top.path:
                return top
            if path.startswith(top.prefix):
                node = top
                for part in path[len(top.prefix):].split("/"):
                    node = node.children.get(part)
                    if node is None:
                        return None
                return node
        return None

    def counts(self):
        """(watched files, walked directories)."""
        files = dirs = 0
        for node in self.nodes():
            dirs += 1
            files += len(node.files)
        return files, dirs

    def files(self):
        """{absolute path: (mtime_ns, size, ino)} of every watched file."""
        out = {}
        for node in self.nodes():
            for name, key in node.files.items():
                out[node.prefix + name] = unpack_key(key)
        return out

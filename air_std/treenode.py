"""The pieces the snapshot is made of: `Node` (one walked directory), `ScanPass`
(one pass's edits to the nodes, each recorded as a change), and the file keys
and content hashes stored in the nodes.

Used by the watcher thread ("air-watcher") through snapshot.py and the
drivers; tests use them with no thread.
"""

import logging
import os
import types

from air_std.filters import MAIN
from air_std.messages import ChangeBatch

__all__ = ["Node", "ScanPass", "file_key", "dir_key", "unpack_key", "store_hash"]

# Air's start() (runner/engine.go) reports a file skipped by exclude_unchanged
# with its main log, so log.main_only still shows it.
main_log = logging.getLogger("air_std.main")

_M64 = (1 << 64) - 1


# The children of a directory that has none: most directories are leaves, and
# one read-only mapping shared by all of them spares a dict each (64 bytes, a
# tenth of a node). add_dir() gives a node its own dict on its first child.
_NO_CHILDREN = types.MappingProxyType({})


class Node:
    """One walked directory of the snapshot."""

    __slots__ = ("path", "rule", "files", "children", "parent", "name", "alive",
                 "ident", "is_link", "dkey", "hashes", "wd")

    def __init__(self, path, rule, parent, name, is_link=False, ident=None):
        self.path = path                      # absolute, no trailing "/" (except "/")
        self.rule = rule                      # filters.DirRule
        self.files = {}                       # name -> file_key(stat)
        self.children = _NO_CHILDREN          # name -> Node
        self.parent = parent
        self.name = name
        self.alive = True
        self.ident = ident                    # (st_dev, st_ino), kept with follow_symlink
        self.is_link = is_link                # reached through a symlink
        self.dkey = None                      # dir_key() of the dir at its last trusted listing
        self.hashes = None                    # name -> digest, with exclude_unchanged
        # The inotify driver's watch descriptor. A slot here costs 8 bytes per
        # directory; a dict beside the tree would cost several times that.
        self.wd = None

    @property
    def prefix(self):
        """The path with one trailing "/", to join names to. Computed, not
        stored: it is needed only where a change is recorded, and a second
        string per directory would cost more than the join."""
        path = self.path
        return path if path.endswith("/") else path + "/"


class ScanPass:
    """One pass over (part of) a snapshot: the edits it makes to the nodes,
    each recorded as a change; the directories it still has to list; and how
    the driver that started it wants directories listed.

    `list_all`: list every directory, even one whose (mtime, inode) held.
    `watches`: None, or an object with `add(node)` (called before a directory
    is listed, so nothing created after the listing is missed) and
    `discard(node)` (called for each directory dropped from the snapshot);
    the inotify driver passes itself. With watches, every symlink entry is
    looked at (`Snapshot.link_dirs` must stay complete for that driver).
    A pass made with record=False (the baseline) records no changes.
    """

    __slots__ = ("snapshot", "created", "modified", "deleted", "new_dirs", "gone_dirs",
                 "pending", "list_all", "watches")

    def __init__(self, snapshot, list_all=False, watches=None, record=True):
        self.snapshot = snapshot
        self.created = [] if record else None   # absolute paths
        self.modified = [] if record else None
        self.deleted = [] if record else None
        self.new_dirs = [] if record else None  # Nodes this pass added
        self.gone_dirs = {} if record else None  # path -> Node this pass dropped
        self.pending = []                       # (node, recurse) still to scan
        self.list_all = list_all
        self.watches = watches

    def batch(self):
        """The changes as one ChangeBatch (sorted paths), or None when there are none."""
        if not (self.created or self.modified or self.deleted):
            return None
        return ChangeBatch(tuple(sorted(self.created)), tuple(sorted(self.modified)),
                           tuple(sorted(self.deleted)))

    def split(self):
        """The changes by who they go to, when there are rules: (ChangeBatch
        of the main build or None, {rule index: [paths, sorted]}). Each path
        is routed by its directory's DirRule, from its name alone."""
        rules_of = {}  # directory path -> DirRule, looked up once per directory
        for path, node in self.gone_dirs.items():
            rules_of[path] = node.rule
        main = ([], [], [])
        by_rule = {}
        for slot, paths in enumerate((self.created, self.modified, self.deleted)):
            for path in sorted(paths):
                d, _, name = path.rpartition("/")
                d = d or "/"
                rule = rules_of.get(d)
                if rule is None:
                    node = self.snapshot.node_at(d)
                    if node is None:
                        continue
                    rule = rules_of[d] = node.rule
                who = rule.route(name)
                if who is None:
                    continue
                if who == MAIN:
                    main[slot].append(path)
                else:
                    by_rule.setdefault(who, []).append(path)
        batch = ChangeBatch(*(tuple(paths) for paths in main))
        return (batch or None), by_rule

    # -- edits: each changes the snapshot and is recorded here ------------------------

    def update_file(self, node, name, key):
        """A known file's key moved."""
        node.files[name] = key
        if self.snapshot.exclude_unchanged:
            old = node.hashes.get(name) if node.hashes is not None else None
            new = store_hash(node, name)
            if old is not None and new == old:
                # only the stat changed: Air's exclude_unchanged skips it, and says so
                if self.modified is not None:
                    main_log.info("skipping %s because contents unchanged",
                                  os.path.relpath(node.prefix + name, self.snapshot.root_path))
                return
        if self.modified is not None:
            self.modified.append(node.prefix + name)

    def drop_file(self, node, name):
        del node.files[name]
        if node.hashes is not None:
            node.hashes.pop(name, None)
        if self.deleted is not None:
            self.deleted.append(node.prefix + name)

    def add_dir(self, node, name, is_link=False, ident=None):
        """The node of a new subdirectory, or None when the filter prunes it."""
        rule = self.snapshot.filters.dir_rule(node.rule, name)
        if rule is None:
            return None
        child = Node(node.prefix + name, rule, node, name, is_link, ident)
        if node.children is _NO_CHILDREN:
            node.children = {}
        node.children[name] = child
        if self.new_dirs is not None:
            self.new_dirs.append(child)
        return child

    def drop_dir(self, node, name):
        """Forget a subdirectory that is gone: all its files are deleted."""
        deleted = self.deleted
        watches = self.watches
        link_dirs = self.snapshot.link_dirs
        stack = [node.children.pop(name)]
        while stack:
            n = stack.pop()
            n.alive = False
            if deleted is not None:
                deleted.extend([n.prefix + fname for fname in n.files])
                self.gone_dirs[n.path] = n
            n.files = {}
            n.hashes = None
            stack.extend(n.children.values())
            n.children = _NO_CHILDREN
            link_dirs.discard(n)
            if watches is not None:
                watches.discard(n)


def file_key(st):
    """(st_mtime_ns, st_size, st_ino) of a stat result as one int: one compare,
    and about a third of the memory of a 3-tuple of ints (a 100k-file snapshot
    would otherwise need some 40 MB). It is one-to-one because
    |mtime_ns| < 2**63 and size < 2**64; "+" rather than "|" keeps negative
    (pre-1970) mtimes apart without a mask. The scan loop inlines the same
    expression."""
    return (st.st_ino << 128) + (st.st_size << 64) + st.st_mtime_ns


def dir_key(st):
    """(st_mtime_ns, st_ino) of a directory as one int: one object where a
    tuple takes three (about 90 bytes less per directory). One-to-one, as
    file_key is."""
    return (st.st_ino << 64) + st.st_mtime_ns


def unpack_key(key):
    """file_key's int back to (mtime_ns, size, ino)."""
    m = key & _M64
    if m >= 1 << 63:  # a negative mtime borrowed from the fields above it
        m -= 1 << 64
    rest = (key - m) >> 64
    return m, rest & _M64, rest >> 64


def store_hash(node, name):
    """Hash a file of `node` (exclude_unchanged) and keep the digest; None when unreadable."""
    digest = _file_hash(node.prefix + name)
    if node.hashes is None:
        node.hashes = {}
    if digest is None:
        node.hashes.pop(name, None)
    else:
        node.hashes[name] = digest
    return digest


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

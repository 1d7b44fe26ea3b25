"""Which filesystem each watched tree lies on, and whether inotify can be
trusted there: the auto watcher's choice between inotify (with a polling
safety net) and polling alone.

Called once by the Watcher before its baseline, in the thread that calls
Watcher.start() (the engine's main thread); tests call `judge()` with a
mount table of their own. Linux only: the table is /proc/self/mountinfo.

inotify reports what this kernel does to files. On a network or shared
filesystem (NFS, SMB, 9p as in WSL2's /mnt/c, virtiofs, FUSE, VirtualBox
shared folders) the other side (another machine, the VM's host, the FUSE
daemon) changes files without this kernel knowing, and no event comes;
polling sees those changes. A type in neither list below is treated as
remote: polling is slower but never blind.

For each tree (symlinks resolved) the mount that holds it is the one with
the longest mount point containing it; every mount below a tree counts too
(a share mounted inside the project), unless the watcher never walks into
it (an excluded directory).
"""

import os
import re
from typing import NamedTuple

__all__ = ["Mount", "Verdict", "parse_mountinfo", "mount_of", "kind_of", "judge",
           "MOUNTINFO", "LOCAL_TYPES", "REMOTE_TYPES"]

MOUNTINFO = "/proc/self/mountinfo"

# Filesystems whose every change goes through this kernel (disks, memory,
# stacks over them), so inotify sees it.
LOCAL_TYPES = frozenset((
    "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "zfs", "f2fs", "jfs", "reiserfs",
    "nilfs2", "tmpfs", "ramfs", "devtmpfs", "overlay", "overlayfs", "aufs", "ecryptfs",
    "squashfs", "erofs", "iso9660", "udf", "vfat", "msdos", "exfat", "ntfs", "ntfs3", "hfs",
    "hfsplus", "minix", "ufs",
))
# Filesystems changed from elsewhere: other machines, a VM's host, a daemon.
# (Any "fuse" or "fuse.*" type is one too.)
REMOTE_TYPES = frozenset((
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "v9fs", "virtiofs", "vboxsf",
    "vmhgfs", "prl_fs", "drvfs", "afs", "coda", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "orangefs", "pvfs2", "ocfs2", "gfs2", "davfs", "sshfs", "fuseblk",
))
# Kernel filesystems mounted inside a tree (only when the root is /) hold no
# sources: a mount of one of these below a tree is not a reason to poll.
_PSEUDO_TYPES = frozenset((
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
    "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "autofs",
    "efivarfs", "selinuxfs", "rpc_pipefs", "nsfs",
))

_ESCAPE = re.compile(rb"\\([0-7]{3})")


class Mount(NamedTuple):
    """One line of the mount table."""

    point: str   # where it is mounted (absolute)
    fstype: str  # "ext4", "nfs4", "fuse.sshfs"...
    source: str  # "/dev/sda1", "server:/export"...


class Verdict(NamedTuple):
    """Whether every watched tree is on a local filesystem, and what to say."""

    local: bool
    why: str  # local: the types, "on ext4"; else the first tree that is not, and why


def _unescape(field):
    # The kernel writes a space as \040, a tab as \011, a newline as \012
    # and a backslash as \134.
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes((int(m.group(1), 8),)), field))


def parse_mountinfo(data):
    """The Mounts of a /proc/PID/mountinfo text (bytes or str), in its order;
    lines that are not mountinfo lines are skipped."""
    if isinstance(data, str):
        data = os.fsencode(data)
    mounts = []
    for line in data.splitlines():
        fields = line.split(b" ")
        # id parent major:minor root point options [optional fields...] - type source super
        try:
            sep = fields.index(b"-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 2 or not fields[4].startswith(b"/"):
            continue
        source = _unescape(fields[sep + 2]) if len(fields) > sep + 2 else ""
        mounts.append(Mount(_unescape(fields[4]), os.fsdecode(fields[sep + 1]), source))
    return mounts


def mount_of(path, mounts):
    """The mount holding absolute, resolved `path`: the longest mount point
    containing it; of mounts stacked on one point, the last (the one on top)."""
    best = None
    for m in mounts:
        p = m.point
        if p == "/" or path == p or path.startswith(p + "/"):
            if best is None or len(p) >= len(best.point):
                best = m
    return best


def kind_of(fstype):
    """"local", "remote" or "unknown"."""
    if fstype in LOCAL_TYPES:
        return "local"
    if fstype in REMOTE_TYPES or fstype == "fuse" or fstype.startswith("fuse."):
        return "remote"
    return "unknown"


def _why_not(path, mount):
    """Why inotify cannot be trusted for `path` on `mount`, or "" when it can."""
    kind = kind_of(mount.fstype)
    if kind == "local":
        return ""
    if kind == "remote":
        return ("%s is on %s (%s), a network or shared filesystem: inotify misses changes "
                "made from its other side" % (path, mount.fstype, mount.source or mount.point))
    return ("%s is on %s, a filesystem type not known to deliver inotify events"
            % (path, mount.fstype))


def judge(trees, table=None, walked=None):
    """Whether inotify can be trusted for every tree.

    trees: absolute paths the watcher walks (the root first). table: a
    mountinfo text (bytes or str); None reads this process's. walked(path):
    whether the watcher walks into directory `path` (absolute, resolved);
    a mount below a tree that it never walks into does not count; None:
    every one counts."""
    if table is None:
        try:
            with open(MOUNTINFO, "rb") as f:
                table = f.read()
        except OSError as e:
            return Verdict(False, "cannot read the mount table %s (%s)"
                           % (MOUNTINFO, e.strerror or e))
    mounts = parse_mountinfo(table)
    if not mounts:
        return Verdict(False, "the mount table %s lists no mount" % MOUNTINFO)
    types = []
    for tree in trees:
        real = os.path.realpath(tree)
        m = mount_of(real, mounts)
        if m is None:
            return Verdict(False, "%s is on no mount of the mount table" % real)
        why = _why_not(real, m)
        if why:
            return Verdict(False, why)
        types.append(m.fstype)
        prefix = real.rstrip("/") + "/"
        below = {}  # point -> the mount on top there
        for b in mounts:
            if b.point.startswith(prefix):
                below[b.point] = b
        for point, b in sorted(below.items()):
            if b.fstype in _PSEUDO_TYPES or (walked is not None and not walked(point)):
                continue
            why = _why_not(point, b)
            if why:
                return Verdict(False, why)
            types.append(b.fstype)
    return Verdict(True, "on " + ", ".join(sorted(set(types))))

"""What air_std puts under tmp_dir, and `clean_on_exit`.

tmp_dir is created at start only when a build may write there. At exit,
with clean_on_exit, a tmp_dir air_std created is removed if it is still that
directory (not a symlink or another directory put in its place); one it
did not create keeps everything but the files air_std wrote (the build log).
A reload of the config may move tmp_dir: each one a config used is cleaned
by these rules. Never anything outside root.

Used by the main thread only (the engine's start, reload and shutdown).
"""

import logging
import os
import shutil

from air_std.errors import AirError

__all__ = ["TmpDirs"]

log = logging.getLogger("air_std.main")


class TmpDirs:
    """The tmp_dirs of one run of air_std, across config reloads."""

    def __init__(self):
        self._made = {}  # tmp_path -> (st_dev, st_ino) of each tmp_dir air_std created
        self._used = {}  # tmp_path -> root_path, for every config run so far
        self._written = []  # files air_std wrote (build logs), from runners already stopped

    def make(self, cfg):
        """Create cfg's tmp_dir if a build may write there. Raises AirError."""
        self._used[cfg.tmp_path] = cfg.root_path
        if os.path.isdir(cfg.tmp_path):
            return
        if not cfg.build.cmd.strip() and not any(c.strip() for c in cfg.build.pre_cmd):
            # no build to put anything there (`run`, a read-only tree), and air_std's
            # only file there is the log of a failed build: nothing to make
            return
        try:
            os.makedirs(cfg.tmp_path)
            st = os.lstat(cfg.tmp_path)
            self._made[cfg.tmp_path] = (st.st_dev, st.st_ino)
        except OSError as exc:
            raise AirError("cannot create tmp_dir %s: %s" % (cfg.tmp_path, exc.strerror))

    def wrote(self, paths):
        """Files a runner wrote, kept for clean_on_exit after it is gone."""
        self._written.extend(paths)

    def clean(self, cfg, written=()):
        """clean_on_exit, as the last config says: every tmp_dir a config used."""
        if not cfg.misc.clean_on_exit:
            return
        written = self._written + list(written)
        dirs = dict(self._used)
        dirs[cfg.tmp_path] = cfg.root_path
        for tmp_path, root_path in dirs.items():
            self._clean_one(tmp_path, root_path, written)

    def _clean_one(self, tmp_path, root_path, written):
        tmp = os.path.realpath(tmp_path)
        root = os.path.realpath(root_path)
        if tmp == root or not tmp.startswith(root + os.sep):
            log.warning("not cleaning tmp_dir %s: it is not inside root %s", tmp, root)
            return
        made = self._made.get(tmp_path)
        if made:
            try:
                st = os.lstat(tmp_path)
            except OSError:
                return
            if (st.st_dev, st.st_ino) != made:
                log.warning("not removing %s: it is no longer the directory air_std created", tmp_path)
                return
            shutil.rmtree(tmp_path, ignore_errors=True)  # the unresolved path: rmtree refuses symlinks
            log.info("removed %s", tmp_path)
            return
        for path in written:
            if os.path.realpath(path).startswith(tmp + os.sep):
                try:
                    os.remove(path)
                except OSError:
                    pass

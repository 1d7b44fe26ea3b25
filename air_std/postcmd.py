"""`build.post_cmd`: the commands run once air_std stops, after the app.

Run by the runner thread as it ends (so after the app's tree was stopped).
The user is waiting for the prompt by then, so each command is bounded by
POST_CMD_TIMEOUT_S, and a second Ctrl-C (the `force` Event) skips the rest.
"""

import logging
import time

from air_std import envfile, process

__all__ = ["run_post_cmd", "POST_CMD_TIMEOUT_S", "POST_CMD_GRACE_S"]

main_log = logging.getLogger("air_std.main")

POST_CMD_TIMEOUT_S = 10.0
# how long a post_cmd still running at its bound gets to exit before SIGKILL
POST_CMD_GRACE_S = 0.5


def post_commands(cfg):
    return [c for c in cfg.build.post_cmd if c.strip()]


def run_post_cmd(cfg, force):
    """Run each post_cmd in turn, each bounded; skipped by a second Ctrl-C."""
    commands = post_commands(cfg)
    if not commands or force.is_set():
        return
    env = envfile.load(cfg.env_files, cfg.root_path)
    for command in commands:
        if force.is_set():
            break
        main_log.info("post_cmd: %s", command)
        try:
            proc = process.spawn(command, cwd=cfg.root_path, env=env, shell=True)
        except (OSError, ValueError) as exc:
            main_log.error("post_cmd %r cannot start: %s", command, exc)
            continue
        deadline = time.monotonic() + POST_CMD_TIMEOUT_S
        while proc.poll() is None and not force.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                main_log.warning("post_cmd %r still running after %.0fs; stopping it",
                                 command, POST_CMD_TIMEOUT_S)
                break
            force.wait(min(0.05, remaining))
        code = process.stop(proc, grace_s=POST_CMD_GRACE_S, name="post_cmd", force=force)
        if code:
            main_log.warning("post_cmd %r: %s", command, process.describe_exit(code))

"""Command line: `air-std [options] [--KEY VALUE ...] [-- APP ARGS]`, `air-std [options] run CMD`
and `air-std init`.

Runs in the main thread. A small hand-written parser, because Air's dotted
overrides (`--build.cmd "make"`, one flag per config key, repeatable lists)
do not fit argparse. Every key and its kind come from schema.py. Modules are
imported lazily so `-v` stays fast: schema for a --KEY flag or -h, config
only when a config is loaded, init_command for `init`, the engine only when
it runs.

Exit codes: 0 ok, 1 for every user error (bad flag, bad config, an AirError
raised by the engine; one line `air_std: error: ...`, no traceback), 130 after
Ctrl-C before the engine took over signals. Usage errors use 1 too (not
argparse's 2) so scripts only need to tell 0 from non-zero. `--once` adds
2 (build failed), 3 (the app exited first), 4 (not ready in time) and
128 + N after stop signal N (once.py).
"""

import os
import sys

from air_std import catch_early_signals, version_line
from air_std.errors import AirError, interrupted

USAGE = """\
usage: air-std [-c FILE] [-d] [--color MODE] [--print-config] [--KEY VALUE ...] [-- APP_ARGS ...]
       air-std [options] run CMD [ARGS ...]
       air-std [options] --once [--ready-url URL] [--ready-after S] [--ready-timeout S]
       air-std init
       air-std -v | -h

Live reload for server apps: watches the project, rebuilds and restarts the app
on every change. Reads .air.toml (Air's format) from the current directory, or
from $air_wd when that is set.

options:
  -c FILE           config file to use instead of ./.air.toml
  -d                debug logging
  --color MODE      auto (colour on a terminal, unless NO_COLOR is set), always or never;
                    wins over [color] mode
  -v, --version     print the start-up banner and the version, and exit
  --print-config    print the effective configuration as JSON and exit
  -h, --help        show this help and exit
  init              write a commented .air.toml for the project in the current directory
  run CMD [ARGS]    CMD is the app: no config needed (no build step; a Python server's
                    files are watched); with an .air.toml, CMD replaces its app command
  --once            CI smoke run: build, start the app, wait until it is ready, stop
                    everything, exit. Exit 0 ready, 2 build failed, 3 the app exited
                    first, 4 not ready in time, 130/143 on SIGINT/SIGTERM
  --ready-url URL   --once: ready when URL answers with a status below 400
  --ready-after S   --once: else (no proxy.app_port) ready after S seconds up (default 2)
  --ready-timeout S --once: the longest wait, build included (default 60)
  --json            one JSON object per line on stdout for each event; the log and
                    the app's output go to stderr
  --                everything after it is passed to the app as arguments

signals:
  SIGINT (Ctrl-C), SIGTERM, SIGHUP   stop the app, run post_cmd, exit 0
  SIGQUIT (Ctrl-\\), a second Ctrl-C  kill everything now
  SIGUSR1 (kill -USR1 PID)           rebuild and restart the app now
  r + Enter (stdin a terminal)       the same (off with build.stdin = true)

while it runs, an edited env file restarts the app; an edited config file is
loaded again (a bad edit is one error line and the running config stays)

config overrides (Air's dotted flags; applied after the file):
  --build.cmd "make build"            --KEY VALUE or --KEY=VALUE, any config key
  --build.exclude_dir a,b             lists are comma-separated; repeating the flag
  --build.exclude_dir c               extends the list (the first one replaces the file's)
  --build.poll true                   booleans: true/false, 1/0, yes/no, t/f
  --build.kill_delay 2s               durations: Go syntax (500ms, 2s) or a number
  --proxy.enabled --proxy.proxy_port 8090 --proxy.app_port 8080
"""


class UsageError(AirError):
    """A bad command line (unknown flag, missing value)."""


class Options:
    def __init__(self):
        self.config_file = None
        self.debug = False
        self.print_config = False
        self.init = False
        self.show_help = False
        self.show_version = False
        self.color = None     # --color, when given
        self.overrides = []   # [(dotted_key, raw string)] in command-line order
        self.app_args = []
        self.run_command = None  # `run CMD ARGS`: the app's command line
        self.once = False
        self.json = False
        self.ready_url = None
        self.ready_after_s = 2.0
        self.ready_timeout_s = 60.0


def parse_args(argv):
    """Parse argv (without the program name) into Options; raises UsageError/ConfigError."""
    opts = Options()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            opts.app_args.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            if arg == "init" and not opts.init and not opts.app_args:
                opts.init = True
                continue
            if arg == "run" and not opts.init:
                command = args[i:]
                if command[:1] == ["--"]:
                    command = command[1:]
                if not command:
                    raise UsageError("run needs the app's command, e.g. `air_std run python app.py`")
                opts.run_command = command
                break
            if opts.init:
                raise UsageError("init takes no arguments, got %r" % arg)
            # Like Air (Go's flag package): the first non-flag argument ends the
            # options, and it and everything after it go to the app.
            opts.app_args.extend(args[i - 1:])
            break
        # Go's flag package accepts -name and --name alike; Air users write both.
        name, eq, value = arg.lstrip("-").partition("=")
        if name in ("h", "help"):
            opts.show_help = True
        elif name in ("v", "version"):
            opts.show_version = True
        elif name in ("d", "debug"):
            opts.debug = True
        elif name == "print-config":
            opts.print_config = True
        elif name == "once":
            opts.once = True
        elif name == "json":
            opts.json = True
        elif name in ("ready-url", "ready-after", "ready-timeout"):
            if not eq:
                if i >= len(args):
                    raise UsageError("--%s needs a value" % name)
                value = args[i]
                i += 1
            if name == "ready-url":
                opts.ready_url = _url(value)
            else:
                setattr(opts, name.replace("-", "_") + "_s", _seconds(name, value))
        elif name == "color":
            if not eq:
                if i >= len(args):
                    raise UsageError("--color needs a value: auto, always or never")
                value = args[i]
                i += 1
            opts.color = _colour_mode(value)
        elif name in ("c", "config"):
            if not eq:
                if i >= len(args):
                    raise UsageError("%s needs a file name (-c FILE)" % arg)
                value = args[i]
                i += 1
            opts.config_file = value
        else:
            from air_std import kinds, schema
            key = schema.flag_key(name)               # ConfigError with a did-you-mean
            if not eq:
                if key.kind is kinds.FLAG:
                    # `--proxy.enabled` alone means true; an explicit word after it is taken.
                    if i < len(args) and args[i].lower() in kinds.Flag.WORDS:
                        value = args[i]
                        i += 1
                    else:
                        value = "true"
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    raise UsageError("--%s needs a value" % name)
            opts.overrides.append((name, value))
    return opts


def _url(value):
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # ValueError for a port out of range or not a number
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in value):
        raise UsageError("--ready-url: expected an http:// or https:// URL such as "
                         "http://127.0.0.1:8000/health, got %r" % value)
    return value


def _seconds(name, value):
    """A positive number of seconds, or a Go duration ("90s", "2m")."""
    from air_std import kinds
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = kinds.parse_go_duration(value.strip(), "--" + name) / 1e9
        except AirError:
            seconds = -1.0
    if not 0 < seconds <= 86400:
        raise UsageError("--%s: expected a number of seconds above 0 (or a duration like "
                         "'90s', '2m'), at most a day, got %r" % (name, value))
    return seconds


def _print_help():
    from air_std import schema
    sys.stdout.write(USAGE)
    sys.stdout.write("\nkeys:\n%s\n" % _wrap(schema.help_keys()))


def _wrap(words, width=78, indent="  "):
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _colour_mode(value):
    """--color's value, checked like Air's main() checks it ("" is auto there too)."""
    from air_std.log import COLOUR_MODES
    if value not in COLOUR_MODES + ("",):
        raise UsageError("--color: expected auto, always or never, got %r" % value)
    return value or "auto"


def _print_version(opts):
    """Air's printVersionOutput (main.go): the config's startup_banner, when it is
    set and not empty, then the version line. A config that cannot be read is
    no reason to fail -v: the version line alone is printed then, as in Air."""
    banner = None
    try:
        from air_std import configfile
        _, found, _, _ = configfile.locate(opts.config_file, os.getcwd(), os.environ)
        if found is not None or opts.overrides:  # else Air's defaults: no banner to read
            from air_std import config
            banner = config.load_config(opts.config_file, opts.overrides).misc.startup_banner
    except AirError:
        pass
    if banner:
        sys.stdout.write(banner if banner.endswith("\n") else banner + "\n")
    print(version_line())


def _init():
    from air_std import init_command
    print(init_command.write_config(os.getcwd()))
    return 0


def _run(opts):
    if opts.show_help:
        _print_help()
        return 0
    if opts.show_version:
        _print_version(opts)
        return 0
    if opts.init:
        return _init()
    from air_std import config
    cfg = config.load_config(opts.config_file, opts.overrides)
    if opts.run_command is not None:
        cfg = _run_config(cfg, opts)
    from air_std import log
    for warning in cfg.warnings + tuple(log.unknown_colours(cfg)):
        sys.stderr.write("air_std: warning: %s\n" % warning)
    if opts.print_config:
        import json
        sys.stdout.write(json.dumps(config.config_to_dict(cfg), indent=2) + "\n")
        sys.stdout.flush()
        return 0
    from air_std import envfile
    envfile.check(cfg.env_files, cfg.root_path)  # a FIFO there would hang the first start
    log.setup_from_config(cfg, opts.debug, colour_mode=opts.color)
    if opts.json:
        from air_std import events
        try:
            events.enable(sys.stdout.fileno())
        except (AttributeError, ValueError, OSError):  # started with stdout closed
            raise UsageError("--json writes its events to stdout, which is closed; "
                             "redirect it (> events.jsonl) or leave --json out")
    once = None
    if opts.once:
        from air_std.once import Once
        once = Once(opts.ready_url, opts.ready_after_s, opts.ready_timeout_s, cfg.proxy.app_port)
    from air_std import engine

    def reload_config():
        # the same file and flags as at start; warnings are logged by the engine
        cfg = config.load_config(opts.config_file, opts.overrides)
        return _run_config(cfg, opts) if opts.run_command is not None else cfg
    return engine.run(cfg, app_args=opts.app_args, once=once, reload_config=reload_config)


def _run_config(cfg, opts):
    """`run CMD`: with no config file, the run defaults under the user's overrides."""
    from air_std import config, run_command
    if cfg.config_path is None:
        overrides = run_command.run_overrides(opts.run_command) + list(opts.overrides)
        cfg = config.load_config(opts.config_file, overrides)
    return run_command.apply_command(cfg, opts.run_command)


def _fill_standard_fds():
    """Started with stdin, stdout or stderr closed (`>&-`): put /dev/null there, or the
    next pipe air_std opens (the engine's self-pipe) would take the number, and the
    app's output copied to "stdout" would land in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv=None):
    """Entry point of `air-std`, `python -m air_std` and the zipapp; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    _fill_standard_fds()
    try:
        catch_early_signals()  # again for the `air-std` script, which starts here
        return _run(parse_args(argv))
    except AirError as exc:
        sys.stderr.write("air_std: error: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `air-std --print-config | head`: the reader left; say nothing more, and keep
        # the interpreter from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if interrupted(exc):  # a Ctrl-C that Python wrapped in another error
            return 130
        raise


def main_exit():
    sys.exit(main())

"""README's Configuration table is the contract with users of Air: every key
air_std's schema knows, and every flag of Air's command line, has a row that
says `same`, `differs: ...` or `air_std's own`; a row for a key that does not
exist would be as misleading as a missing one."""

import re

from air_std import schema
from conftest import REPO

# Air's command line (main.go, and one dotted flag per key: runner/flag.go),
# plus air_std's own flags.
FLAGS = ("-c", "-d", "-v", "--color", "init", "-h", "--<key>", "ARGS", "--print-config",
         "run", "--once", "--ready-url", "--ready-after", "--ready-timeout", "--json")
VERDICTS = ("same", "differs", "air_std's own")


def config_table():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]  # the table, not the subsections ([[build.rules]])
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, verdict = [cell.strip() for cell in line.strip().strip("|").split("|", 2)[:2]]
        for name in re.findall(r"`([^`]+)`", first):
            rows[name] = verdict
    return rows


def test_every_key_and_flag_has_a_row_that_says_same_or_differs():
    rows = config_table()
    names = {name.split()[0] for name in rows}
    missing = [k.dotted for k in schema.KEYS if k.dotted not in rows]
    missing += [f for f in FLAGS if f not in names]
    assert not missing, "README's Configuration table has no row for %s" % ", ".join(missing)
    for name, verdict in rows.items():
        assert verdict.startswith(VERDICTS), "README row %s says neither same nor differs: %r" % (
            name, verdict[:60])


def test_no_row_names_a_key_or_flag_that_does_not_exist():
    known = {k.dotted for k in schema.KEYS}
    platform = {"[build.%s]" % p for p in schema.PLATFORMS}
    aliases = ("--config", "--help", "--version", "--")
    for name in config_table():
        word = name.split()[0]
        if word in FLAGS + aliases or name in platform:
            continue
        if word.startswith("--"):
            schema.flag_key(word[2:])  # ConfigError for a flag air_std does not have
            continue
        assert name in known, "README's table has a row for %s, which air_std does not know" % name


def rules_table():
    """{rule key: its 'compared with Air' cell} from the table under ### Rules."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n### Rules\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first, verdict = [cell.strip() for cell in line.strip().strip("|").split("|", 2)[:2]]
            rows[first.strip("`")] = verdict
    return rows


def test_every_rule_key_has_a_row_that_says_same_differs_or_its_own():
    rows = rules_table()
    names = [key.name for key in schema.RULE_KEYS]
    assert sorted(rows) == sorted(names), "README's [[build.rules]] table: %s, schema: %s" % (
        sorted(rows), sorted(names))
    for name, verdict in rows.items():
        assert verdict.startswith(VERDICTS), "README rule key %s: %r" % (name, verdict[:60])
    # the keys Air does not have say so
    assert rows["restart"] == rows["reload"] == "air_std's own"


def test_the_quick_start_configs_are_the_files_tested_in_ci():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python quick start\n", 1)[1].split("\n## ", 1)[0]
    for kind in ("flask", "django", "fastapi"):
        path = REPO / "examples" / "quickstart" / kind / ".air.toml"
        block = "```toml\n%s```\n" % path.read_text(encoding="utf-8")
        assert block in section, "README's quick start does not show %s as it is" % path

"""Regenerate the reference parts of the docs from the code, so they cannot drift:
the config tables of docs/configuration.md (strom.metadata.configs) and the table of
advertised APIs in docs/architecture.md (strom.handlers.registry).

    python tools/gen_docs.py          # rewrite the files
    python tools/gen_docs.py --check  # exit 1 if a file is out of date (the tests run this)

Only the text between the BEGIN/END markers is generated; the rest is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from strom.handlers.registry import registrations
from strom.metadata.configs import BROKER_CONFIGS, TOPIC_CONFIGS, ConfigDef
from strom.protocol.api import ApiKey

DOCS = Path(__file__).resolve().parent.parent / "docs"
BEGIN = "<!-- BEGIN GENERATED: tools/gen_docs.py -->"
END = "<!-- END GENERATED -->"


def _cell(text: str | None) -> str:
    if text is None:
        return "(none)"
    if text == "":
        return '""'
    return "`" + text.replace("|", "\\|") + "`"


def _row(defn: ConfigDef, extra: str) -> str:
    return f"| `{defn.name}` | {defn.type} | {_cell(defn.default)} | {extra} | {defn.doc.replace('|', '/')} |"


def api_table() -> str:
    lines = [
        BEGIN,
        "",
        "| key | API | versions | handler |",
        "|---:|---|---|---|",
    ]
    for key, registration in sorted(registrations().items()):
        name = "".join(part.capitalize() for part in ApiKey(key).name.split("_"))
        versions = f"{registration.min_version}-{registration.max_version}"
        if registration.decodable_from > registration.min_version:
            versions += f" (v{registration.min_version}-{registration.decodable_from - 1}: UNSUPPORTED_VERSION)"
        module = registration.handler.__module__.removeprefix("strom.")
        lines.append(f"| {key} | {name} | {versions} | `{module}` |")
    lines += ["", END]
    return "\n".join(lines)


def config_tables() -> str:
    lines = [
        BEGIN,
        "",
        "### Broker configs",
        "",
        "Static ones are read at start-up (file, `STROM_*` environment, flags); dynamic ones can",
        "also be changed at run time with AlterConfigs / IncrementalAlterConfigs on the broker",
        "resource (`\"\"` for the cluster default, or the node id).",
        "",
        "| name | type | default | changeable | meaning |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(BROKER_CONFIGS):
        defn = BROKER_CONFIGS[name]
        lines.append(_row(defn, "static" if defn.read_only else "dynamic"))
    lines += [
        "",
        "### Topic configs",
        "",
        "Set per topic at creation or with AlterConfigs; a topic without an override takes the",
        "broker config named in the third column (the first one set), else the default.",
        "",
        "| name | type | default | broker default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(TOPIC_CONFIGS):
        defn = TOPIC_CONFIGS[name]
        synonyms = ", ".join(f"`{s}`" for s in defn.broker_synonyms) or "-"
        lines.append(_row(defn, synonyms))
    lines += ["", END]
    return "\n".join(lines)


GENERATORS = {"configuration.md": config_tables, "architecture.md": api_table}


def render(text: str, generated: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + generated + text[end:]


def main() -> int:
    stale = []
    for name, generate in GENERATORS.items():
        path = DOCS / name
        current = path.read_text()
        wanted = render(current, generate())
        if current != wanted:
            stale.append(path)
            if "--check" not in sys.argv[1:]:
                path.write_text(wanted)
    if stale and "--check" in sys.argv[1:]:
        print(f"out of date: {', '.join(map(str, stale))}; run python tools/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the config tables of docs/configuration.md from strom.metadata.configs.

    python tools/gen_config_docs.py          # rewrite the file
    python tools/gen_config_docs.py --check  # exit 1 if the file is out of date (tests run this)

Only the text between the BEGIN/END markers is generated; the rest is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from strom.metadata.configs import BROKER_CONFIGS, TOPIC_CONFIGS, ConfigDef

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED: tools/gen_config_docs.py -->"
END = "<!-- END GENERATED -->"


def _cell(text: str | None) -> str:
    if text is None:
        return "(none)"
    if text == "":
        return '""'
    return "`" + text.replace("|", "\\|") + "`"


def _row(defn: ConfigDef, extra: str) -> str:
    return f"| `{defn.name}` | {defn.type} | {_cell(defn.default)} | {extra} | {defn.doc.replace('|', '/')} |"


def generated() -> str:
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


def render(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + generated() + text[end:]


def main() -> int:
    current = DOC.read_text()
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        if current != wanted:
            print(f"{DOC} is out of date: run python tools/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())

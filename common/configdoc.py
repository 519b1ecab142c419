"""Writes docs/configuration.md from the config dataclasses, so the reference never drifts from the code.

Run ``python -m common.configdoc > docs/configuration.md``; a test checks the file is current.
"""

from __future__ import annotations

import dataclasses
import sys
import typing

from common import config as cfg

HEADER = """# Configuration reference

One TOML file per node (default `/etc/changbai/node.toml`, `--config PATH` or `$CHANGBAI_CONFIG` to
override). It is checked once, at start: every problem is printed on its own line naming the file, the key, the
bad value and what is allowed, and the node exits with code 2. Unknown keys are errors. Examples for each role:
`examples/*.toml`.

This page is generated from the code by `python -m common.configdoc > docs/configuration.md`.
"""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return "" if f.default is None else f"`{f.default!r}`".replace("PosixPath", "Path")
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "**required**"


def _range(f: dataclasses.Field) -> str:
    lo, hi, pattern = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("pattern")
    parts = []
    if lo is not None or hi is not None:
        parts.append(f"{lo if lo is not None else ''}..{hi if hi is not None else ''}")
    if pattern:
        parts.append(f"`{pattern}`")
    return " ".join(parts)


def section_table(title: str, cls: type, nested: list[tuple[str, type]]) -> str:
    hints = typing.get_type_hints(cls)
    doc = (cls.__doc__ or "").strip()
    summary = "" if doc.startswith(f"{cls.__name__}(") else doc.splitlines()[0]  # skip dataclass's own
    lines = [f"### `{title}`", "", summary, ""]
    lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) in (tuple, list) else tp
        if isinstance(inner, type) and dataclasses.is_dataclass(inner) and inner not in (c for _, c in nested):
            nested.append((f"{title}.{f.name}" + ("[]" if inner is not tp else ""), inner))
        kind = cfg._describe(tp).replace("|", "\\|")
        help_text = str(f.metadata.get("help", "")).replace("|", "\\|")
        lines.append(f"| `{f.name}` | {kind} | {_default(f)} | {_range(f)} | {help_text} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    out = [HEADER, "## Sections every node has\n"]
    common = [
        ("node", cfg.NodeSection),
        ("central", cfg.CentralSection),
        ("outbox", cfg.OutboxSection),
        ("gpio", cfg.GpioSection),
        ("audio", cfg.AudioSection),
        ("update", cfg.UpdateSection),
    ]
    for title, cls in common:
        out.append(section_table(title, cls, []))
    out.append("## Shared types\n")
    for cls in (cfg.InputPin, cfg.ButtonPin, cfg.LedPin, cfg.SerialPort):
        out.append(section_table(cls.__name__, cls, []))
    for role in cfg.ROLE_SECTIONS:
        out.append(f"## Role `{role}`\n")
        queue: list[tuple[str, type]] = [(role, cfg.role_section_class(role))]
        shared = (cfg.InputPin, cfg.ButtonPin, cfg.LedPin, cfg.SerialPort)
        done = 0
        while done < len(queue):
            title, cls = queue[done]
            done += 1
            if cls in shared:
                out.append(f"`{title}` is a [{cls.__name__}](#{cls.__name__.lower()}) table.\n")
                continue
            out.append(section_table(title, cls, queue))
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())

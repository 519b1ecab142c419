"""`provision prompts`: every prompt a role can say, by stable id, with its text; optionally the speech check with
the real espeak-ng, a prompt pack's coverage, or a pack manifest to record from.

    provision prompts --role elevator           the lift's prompts with the default texts
    provision prompts                           this node's prompts (its config: texts, gate, hotline)
    provision prompts --check                   each text read by espeak-ng: Mandarin, no switch to English
    provision prompts --pack /etc/changbai/voice   which prompts the pack records, which are synthesised
    provision prompts --manifest > pack.toml    every clip a pack needs (prompts, pieces, words), to record
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from common.config import NodeConfig
from common.speech.pack import PackError, load_pack
from common.speech.voice import Prompt, pack_gaps, synthesised_parts
from common.tomlwrite import dumps
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_HARDWARE,
    EXIT_OK,
    ProvisionError,
)
from provisioning.prompts import ROLES, EspeakError, check_prompts, role_prompts


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "prompts",
        "List every prompt a role can say (stable id, when, text); check them with espeak-ng, "
        "check a prompt pack against them, or write the manifest of a pack to record.",
        exits="1 when --check finds a prompt not read in the voice's language, or --pack a prompt the pack cannot say",
    )
    parser.add_argument("--role", choices=ROLES, help="a role's default prompts, without a config")
    parser.add_argument("--voice", help="espeak-ng voice for --check (default: audio.voice, or cmn-latn-pinyin)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="read every text with the real espeak-ng")
    what.add_argument("--pack", type=Path, metavar="DIR", help="which prompts this pack records")
    what.add_argument("--manifest", action="store_true", help="print a pack.toml listing every clip to record")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    return parser


def _listing(prompts: tuple[Prompt, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "when": p.when,
            "text": p.template,
            "fields": list(p.fields),
            "pieces": [{"id": i, "text": t} for i, t in p.pieces()] if p.fields else [],
            "words": list(p.words),
        }
        for p in prompts
    ]


def _print_listing(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(f"{row['id']}  ({row['when']})\n    {row['text']}")
        for piece in row["pieces"]:
            print(f"    piece {piece['id']}: {piece['text']}")
        if row["fields"]:
            print(f"    fields {', '.join('{' + f + '}' for f in row['fields'])}: a pack says them with word.* clips")


def manifest(prompts: tuple[Prompt, ...], role: str) -> str:
    """A pack.toml listing every clip the role's prompts need: whole prompts, pieces, and words for the fields."""
    clips: dict[str, str] = {}
    for prompt in prompts:
        clips.update(dict(prompt.pieces()))
        clips.update({f"word.{w}": w for w in prompt.words})
    head = {"name": f"{role} prompts (edit: who recorded them, when)", "language": "zh"}
    note = (
        "# A prompt pack: record one WAV per clip below, named <id>.wav, 16-bit PCM (sox IN -b 16 -c 1 OUT.wav).\n"
        "# Keep each text as it is: a clip whose text differs from the node's is not played (synthesised instead).\n"
        "# Car colours and models come from the central: add word.<name> clips for those you hear, or they are\n"
        "# synthesised.\n"
    )
    return note + dumps({"pack": head, "clips": clips})


def run(args: argparse.Namespace, config: NodeConfig | None, role: str) -> int:
    if role == "kiosk" and config is None and (args.manifest or args.pack):
        raise ProvisionError(
            EXIT_BAD_INPUT,
            "the kiosk's prompts name its gate and hotline: a pack is recorded for one kiosk",
            ["give that kiosk's config: provision prompts --config /etc/changbai/node.toml --manifest"],
        )
    prompts = role_prompts(role, config)
    if args.manifest:
        print(manifest(prompts, role), end="")
        return EXIT_OK
    if args.check:
        voice = args.voice or (config.audio.voice if config else "cmn-latn-pinyin")
        try:
            used, warning, results = check_prompts(prompts, voice)
        except EspeakError as exc:
            raise ProvisionError(EXIT_HARDWARE, str(exc)) from None
        rows: list[dict[str, Any]] = [
            {"id": r.prompt.id, "ok": r.ok, "texts": [{"text": c.text, "phonemes": c.phonemes} for c in r.checks],
             "problems": r.problems}
            for r in results
        ]  # fmt: skip
        if args.json:
            print(json.dumps({"voice": used, "warning": warning, "prompts": rows}, ensure_ascii=False, indent=2))
        else:
            if warning:
                print(f"warning: {warning}")
            for row in rows:
                print(f"{'PASS' if row['ok'] else 'FAIL'}  {row['id']}  ({len(row['texts'])} texts, voice {used})")
                for problem in row["problems"]:
                    print(f"      {problem}")
                print(f"      {row['texts'][0]['phonemes'].splitlines()[0][:100]}" if row["texts"] else "")
        return EXIT_OK if all(r.ok for r in results) else EXIT_CHECK_FAILED
    if args.pack:
        try:
            pack = load_pack(args.pack)
        except PackError as exc:
            raise ProvisionError(EXIT_BAD_INPUT, f"{args.pack}: not a usable prompt pack", exc.problems) from None
        gaps = pack_gaps(pack, prompts)
        mixed = {p.id: parts for p in prompts if p.id not in gaps and (parts := synthesised_parts(pack, p))}
        if args.json:
            out = {"pack": pack.name, "clips": len(pack.clips), "problems": list(pack.problems), "synthesised": gaps,
                   "synthesised_parts": mixed}  # fmt: skip
            print(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            print(f"pack {pack.name}: {len(pack.clips)} clips usable, {len(pack.problems)} problems")
            for problem in pack.problems:
                print(f"  problem: {problem}")
            for prompt in prompts:
                print(f"{'RECORDED   ' if prompt.id not in gaps else 'SYNTHESISED'}  {prompt.id}"
                      + (f"  ({gaps[prompt.id]})" if prompt.id in gaps else "")
                      + (f"  (espeak-ng says what has no word clips: {', '.join(mixed[prompt.id][:3])}"
                         f"{' ...' if len(mixed[prompt.id]) > 3 else ''})" if prompt.id in mixed else ""))  # fmt: skip
        return EXIT_CHECK_FAILED if gaps or pack.problems else EXIT_OK
    rows = _listing(prompts)
    if args.json:
        print(json.dumps({"role": role, "prompts": rows}, ensure_ascii=False, indent=2))
    else:
        _print_listing(rows)
    return EXIT_OK


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.role and args.config:
        raise ProvisionError(EXIT_BAD_INPUT, "give --role (default texts) or --config (this node's), not both")
    config = None if args.role else load_node_config(args.config)
    role = args.role or (config.node.role if config else "")
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower() not in ("utf-8", "utf8"):
        sys.stdout.reconfigure(encoding="utf-8")  # the texts are Chinese
    return run(args, config, role)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

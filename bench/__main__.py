"""`changbai-bench`: run every benchmark under bench/ and print one table of figures.

Each benchmark is a module ``bench/bench_*.py`` with ``run(quick: bool) -> list[Figure]``. ``--quick`` runs
smaller loads (a smoke check); ``--only NAME`` runs the modules whose name contains NAME.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback

import bench
from bench.figures import Figure, print_table


def discover(only: str | None) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    return [n for n in names if only is None or only in n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="changbai-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small loads, for a smoke check")
    parser.add_argument("--only", metavar="NAME", help="run only benchmarks whose module name contains NAME")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    names = discover(args.only)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no benchmark matches {args.only!r}", file=sys.stderr)
        return 2
    figures: list[Figure] = []
    failed = 0
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            figures += importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            failed += 1
            traceback.print_exc()
            figures.append(Figure(name, "FAILED", "", "see traceback above"))
        print(f"[bench] {name} done in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
    print_table(figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

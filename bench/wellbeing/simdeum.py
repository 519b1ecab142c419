"""pysimdeum households for the evaluation: run the peer simulator as a tool in its own venv, read what it wrote.

pysimdeum 1.0.1 (KWR-Water/pysimdeum, EUPL-1.2) needs pandas < 2.1 and numpy < 2, so it lives in ``.venv-simdeum``
beside ``.venv``, made on first use with pinned versions; nothing of it is imported here. ``simdeum_export.py`` is
the script that venv runs; its JSON files are cached under ``.cache/simdeum/`` (delete them to make them again).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.wellbeing.household import Day, Use

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-simdeum"
CACHE = ROOT / ".cache" / "simdeum"
EXPORT = Path(__file__).with_name("simdeum_export.py")
PINS = ("pysimdeum==1.0.1", "pandas==2.0.3", "numpy==1.26.4", "xarray==2023.8.0", "scipy==1.11.4", "toml")
_CISTERN_L = {"WcNormal": 9.0, "WcNormalSave": 9.0, "WcNew": 6.0, "WcNewSave": 6.0}


@dataclass
class SimdeumHousehold:
    uses: list[Use]
    days: list[Day]
    wc_litres: float
    wc_lps: float
    shower_lps: float = 0.13  # SIMDEUM's two shower heads give 0.123 and 0.142 L/s


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """The separate venv with pysimdeum and the versions it runs with; made once (a minute or two)."""
    python = _python()
    if python.exists():
        return python
    print(f"making {VENV} for pysimdeum (once)...", file=sys.stderr)
    venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    return python


def _path(variant: str, seed: int, days: int) -> Path:
    return CACHE / f"{variant}-{seed}-{days}d.json"


def prepare(variant: str, seeds: tuple[int, ...], days: int, jobs: int = 1) -> None:
    """Make every household of ``seeds`` not yet cached, ``jobs`` runs of the tool side by side."""
    missing = [s for s in seeds if not _path(variant, s, days).exists()]
    if not missing:
        return
    python = ensure_venv()
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"pysimdeum: making {len(missing)} '{variant}' households of {days} days...", file=sys.stderr)
    chunks = [missing[i :: max(1, jobs)] for i in range(max(1, jobs))]

    def run(chunk: list[int]) -> None:
        for seed in chunk:
            cmd = [str(python), str(EXPORT), "--variant", variant, "--seeds", str(seed), "--days", str(days)]
            subprocess.run([*cmd, "--out", str(CACHE)], check=True, stderr=subprocess.DEVNULL)

    with ThreadPoolExecutor(len(chunks)) as pool:
        list(pool.map(run, [c for c in chunks if c]))


def load(variant: str, seed: int, days: int) -> SimdeumHousehold:
    """One household as the export tool wrote it (made now if missing)."""
    path = _path(variant, seed, days)
    if not path.exists():
        prepare(variant, (seed,), days)
    data = json.loads(path.read_text(encoding="utf-8"))
    uses = [Use(float(u[0]), float(u[1]), float(u[2])) for u in data["uses"]]
    days_out = []
    for d in data["days"]:
        day = Day(int(d["index"]), float(d["wake"]), float(d["bed"]))
        day.out = [(float(a), float(b)) for a, b in d["out"]]
        days_out.append(day)
    wc = data["wc"]
    return SimdeumHousehold(uses, days_out, _CISTERN_L.get(wc["subtype"], 6.0), float(wc["litres_per_s"]))

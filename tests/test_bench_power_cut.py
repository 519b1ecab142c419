"""The power-cut bench's own checks can fail (LazyFS itself cannot run in CI: no FUSE, no package)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_power_cut import NOT_RUN, _against_records, run
from bench.lazyfs import LazyFS, LazyFSError


def _record(site: Path, files: dict[str, bytes]) -> None:
    lines = []
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    info = site / "demo-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("\n".join([*lines, "demo-1.0.dist-info/RECORD,,"]) + "\n")


def test_the_record_check_counts_a_file_a_power_cut_emptied(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _record(site, {"demo/__init__.py": b"", "demo/node.py": b"def main():\n    pass\n"})
    assert _against_records(tmp_path) == (2, 0)
    (site / "demo" / "node.py").write_bytes(b"")  # what the cut left
    assert _against_records(tmp_path) == (2, 1)


def test_without_lazyfs_the_bench_says_it_did_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAZYFS", raising=False)
    assert [f.value for f in run(quick=True)] == [NOT_RUN]


def test_lazyfs_is_refused_a_path_its_argument_parser_misreads(tmp_path: Path) -> None:
    with pytest.raises(LazyFSError, match="'-o'"):
        LazyFS(Path("/bin/true"), tmp_path / "pcut-outbox")


def test_the_guests_check_fails_where_no_version_was_installed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bench.power_cut_vm import guest_check

    assert guest_check(tmp_path) is False
    assert "no current version" in capsys.readouterr().out


def test_the_guests_check_imports_without_the_centrals_packages() -> None:
    """The power-cut guest installs the node's packages only. dcc3a3b made its check import the central's server
    (uvicorn) through bench.harness, and every cut read "no check result"."""
    blocked = "import sys; sys.modules.update(uvicorn=None, fastapi=None, psycopg=None, aiosmtpd=None); "
    probe = blocked + "import bench.bench_power_cut, updates.layout, bench.power_cut_vm"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_vm_check_compared_with_a_revision_git_does_not_know_stops_at_once_naming_it() -> None:
    from bench.vm import workspace

    failed = "--compare no-such-revision: git worktree add failed: .*no-such-revision"
    with pytest.raises(SystemExit, match=failed), workspace("test", "no-such-revision", keep=False):
        pytest.fail("entered without the compared checkout")

"""Central: the operator pages in a real browser (Debian's headless chromium) under their Content-Security-Policy.

The policy allows the pages' own script and style by hash only. A wrong hash would leave the community
centre with a dead page and no alerts, so the check is the browser's own: the script must run (it writes the
key prompt into the page) and the console must report no policy violation.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.fixtures.browser import BROWSER_FLAGS

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/bootstrap.sh installs it)")
FLAGS = [*BROWSER_FLAGS, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"]


def render(url: str, profile) -> tuple[str, str]:
    """(the DOM after the page's script ran, the browser's console log)."""
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    return out.stdout, out.stderr


@pytest.mark.parametrize(
    "path, where, written_by_script",
    [("/", r'<main id="view"[^>]*>(.*)</main>', "值班人员登录"),
     ("/operator/updates", r'id="status"[^>]*>([^<]*)<', "Log in on the duty console")],
)  # fmt: skip
def test_the_page_runs_under_its_policy_in_chromium(central, tmp_path, path, where, written_by_script):
    dom, console = render(f"{central.url}{path}", tmp_path / "profile")
    assert "Content Security Policy" not in console, console[-3000:]
    # the script's text is in the DOM dump too: look for it where only the running script puts it
    found = re.search(where, dom, re.S)
    assert found and written_by_script in found.group(1), dom[-3000:]

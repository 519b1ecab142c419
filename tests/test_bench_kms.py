"""scripts/kiosk-kms-vm's comparison of the guest's screen with the Xvfb rendering (bench/kiosk_kms_vm.match_share)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from bench.kiosk_kms_vm import MATCH_SHARE, match_share


def _screen(path: Path, left: int, label_at: int) -> Path:
    image = Image.new("RGB", (320, 200), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, 30, left + 220, 190], fill=(10, 90, 50))
    draw.rectangle([left + 40, label_at, left + 180, label_at + 30], fill=(255, 255, 255))
    image.save(path)
    return path


def test_the_idle_screen_moved_against_burn_in_matches_and_another_screen_does_not(tmp_path: Path) -> None:
    reference = _screen(tmp_path / "idle.png", 10, 80)
    moved = _screen(tmp_path / "moved.png", 18, 80)  # the burn-in shift: 8 px to the right
    other = _screen(tmp_path / "other.png", 10, 140)
    assert match_share(moved, reference) >= 0.97  # all but the 8 px strip the move uncovers
    assert match_share(other, reference) < MATCH_SHARE
    assert match_share(tmp_path / "idle.png", _screen(tmp_path / "far.png", 40, 80)) < MATCH_SHARE  # 30 px: too far
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    assert match_share(tmp_path / "small.png", reference) == 0.0

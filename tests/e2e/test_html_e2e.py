"""The HTML report rendered in headless Chromium (Debian's ``chromium`` package; the README's test
command installs it): the screenshot must not be blank, the embedded figures must decode, and the
DOM must hold the main sections. The page is tests/unit/test_html.py's."""

from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ..unit.test_html import HEADINGS, SECTIONS, page, resnet  # noqa: F401  (page and resnet are fixtures)


# --- headless Chromium ----------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.fail("chromium is not installed: the HTML report test renders the page in headless Chromium; "
                "install Debian's package (apt-get install -y chromium), as the README's test command does")


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Chromium profile for the module's runs (one after another): only the first pays its creation."""
    return tmp_path_factory.mktemp("chromium-profile")


def _run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _screenshot(url: str, tmp_path: Path, profile: Path, name: str, size: str = "1280,2000") -> np.ndarray:
    import matplotlib.image as mpimg

    png = tmp_path / f"{name}.png"
    proc = _run_chromium([f"--screenshot={png}", f"--window-size={size}", url], profile)
    assert png.exists(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    image = mpimg.imread(str(png))
    return (np.asarray(image)[..., :3] * 255).round().astype(np.uint8)


def _distinct_colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


@pytest.mark.slow
def test_chromium_renders_the_page(page: Path, tmp_path: Path, profile: Path) -> None:
    pixels = _screenshot(page.as_uri(), tmp_path, profile, "page")
    assert pixels.shape[:2] == (2000, 1280)
    assert _distinct_colours(pixels) > 200, "the screenshot is blank or nearly so"
    ink = (pixels.min(axis=2) < 200).mean()
    assert ink > 0.01, f"only {ink:.2%} of the screenshot has ink"
    accent = np.array([0x4C, 0x78, 0xA8])  # the share bars (CSS) in the top tables
    assert (np.abs(pixels.astype(int) - accent).sum(axis=2) < 20).sum() > 50


def test_chromium_decodes_the_figures(page: Path, tmp_path: Path, profile: Path) -> None:
    # The figures sit below the first screen: show them alone on a page of their own.
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">', text)
    figures = tmp_path / "figures.html"
    figures.write_text("<!DOCTYPE html><html><body style='margin:0'>" + "".join(images[:2]) + "</body></html>")
    pixels = _screenshot(figures.as_uri(), tmp_path, profile, "figures", size="1000,900")
    orange = np.array([0xF5, 0x85, 0x18])  # backward phase bars in the first figure
    assert (np.abs(pixels.astype(int) - orange).sum(axis=2) < 20).sum() > 1000, "the figures did not decode"


def test_chromium_dom_has_the_main_sections(page: Path, profile: Path) -> None:
    proc = _run_chromium(["--dump-dom", page.as_uri()], profile)
    dom = proc.stdout
    assert "<main>" in dom, f"chromium dumped no DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom, sid
    for heading in HEADINGS:
        assert htmllib.escape(heading) in dom, heading
    assert dom.count("<img ") == 5 and dom.count('class="finding') >= 1

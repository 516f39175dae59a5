"""The run's report: report.md's tables, and report.html rendered by headless Chromium without errors."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rbft.stages.report import FILES


def chromium() -> str | None:
    return os.environ.get("RBFT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_md_has_the_tables_and_its_figures(finished_run):
    _, out = finished_run
    text = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    for name in ("zero-shot", "direct SFT", "RB-FT", "RB-FT [file-rationales]", "direct SFT [file-rationales]"):
        assert f"| {name} |" in text
    assert "## Label budget" in text and "| 12 | 1 |" in text and "| 24 | 1 |" in text
    rbft = results["methods"]["rbft"]
    assert f"{rbft['macro_f1']:.3f} ± 0.000 [{rbft['ci95']['macro_f1'][0]:.2f}" in text
    assert "RB-FT minus direct SFT" in text and "McNemar" in text
    for link in ("per_class.png", "confusion.png", "curves.png", "label_budget.png"):
        assert f"]({FILES}/{link})" in text and (out / FILES / link).stat().st_size > 1000
    assert "broken" in text and "truncated" in text  # the dropped video, with its kind


@pytest.mark.skipif(chromium() is None and not os.environ.get("CI"),
                    reason="no Chromium here (apt install chromium, or set RBFT_CHROMIUM); CI installs it")
def test_report_html_renders_in_headless_chromium_without_console_errors(finished_run, tmp_path):
    from playwright.sync_api import sync_playwright

    _, out = finished_run
    html = (out / "report.html").read_text()
    assert "src=\"data:image/png;base64," in html and "<script" not in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    problems, shot = [], tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.goto(Path(out / "report.html").as_uri())
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == []
    assert len(images) >= 3 and all(images)  # every figure decoded
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 900 and pixels.std() > 10  # a long page with content, not a blank one

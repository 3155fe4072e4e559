"""A real browser for the report pages: Debian's chromium, driven through chromium-driver by selenium.

The pages come from real runs of the default bundle with tiny settings (a few inversion and
attack steps, two or three images), made once per session. Screenshots go to
``$CFATTACK_TEST_ARTIFACTS/browser/`` when that variable is set (CI keeps them), else to the
session's temporary folder. Everything skips, with the reason, where chromium, chromium-driver
or selenium is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
WIDTH, HEIGHT = 1280, 800


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless chromium window of 1280 x 800 CSS pixels that keeps the console log."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = _find("chromium", "/usr/bin/chromium", "chromium-browser")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1",
                     "--disable-background-networking", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so selenium never looks for a driver on the network.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots are kept: $CFATTACK_TEST_ARTIFACTS/browser, else a session temporary folder."""
    root = os.environ.get("CFATTACK_TEST_ARTIFACTS")
    folder = Path(root) / "browser" if root else tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Pages:
    explanation: Path
    comparison: Path
    global_page: Path
    batch: Path


@pytest.fixture(scope="session")
def pages(tmp_path_factory) -> Pages:
    """explanation.html, comparison.html and global.html from real runs of the default bundle."""
    import torch

    from cfattack.batch.runner import BatchJob
    from cfattack.bundle.loader import load_bundle
    from cfattack.config import AttackConfig, InversionConfig
    from cfattack.evaluation.compare import compare_classifiers
    from cfattack.pipeline.explainer import Explainer
    from cfattack.pipeline.explanation import ExplainConfig
    from cfattack.reports.comparison import write_comparison

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("pages")
        bundle = load_bundle("default")
        config = ExplainConfig(inversion=InversionConfig(steps=5), attack=AttackConfig(steps=30, lr=0.02))
        explanation = Explainer(bundle, config).explain(EXAMPLES / "trouser-1.png", target="dress", k=3)
        files = explanation.save(root / "explanation")

        images = [EXAMPLES / "trouser-1.png", EXAMPLES / "coat-1.png"]
        names = list(bundle.classifiers)[:2]
        comparison = compare_classifiers(bundle, images, classifiers=names, config=config)
        compared = write_comparison(comparison, root / "compare")

        # Both directions of one class pair, so that global.html has a merged section too.
        manifest = root / "items.csv"
        manifest.write_text("image,target\n"
                            f"{EXAMPLES / 'coat-1.png'},pullover\n"
                            f"{EXAMPLES / 'pullover-1.png'},coat\n"
                            f"{EXAMPLES / 'trouser-1.png'},dress\n")
        batch = root / "batch"
        BatchJob(manifest, batch, bundle=bundle, config=config, batch_size=3).run()
    finally:
        torch.set_num_threads(threads)
    return Pages(files["html"], compared["html"], batch / "global.html", batch)

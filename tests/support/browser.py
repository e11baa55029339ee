"""A real headless Chromium for the console's browser test: Debian's `chromium` and `chromium-driver`, installed
with apt-get when /usr/bin/chromium is missing (root, or sudo without a password), driven by Selenium through
/usr/bin/chromedriver (no driver download). Anything missing fails loudly: the test never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def ensure_chromium() -> None:
    """Install Debian's Chromium and its driver unless both are there; raise when that is not possible."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and shutil.which("sudo") is None:
        raise RuntimeError(f"{CHROMIUM} is missing and apt-get needs root: run "
                           "`apt-get install -y chromium chromium-driver` first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        done = subprocess.run([*prefix, *command], env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                               f"\n{done.stderr[-2000:]}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise RuntimeError(f"apt-get ran but {CHROMIUM} or {CHROMEDRIVER} is still missing")


def chromium(profile: Path) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile in `profile`."""
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver

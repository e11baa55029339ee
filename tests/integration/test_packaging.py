"""The SDK installs as client/README.md says: `python3 dev.py build flagsvc-client` makes a wheel, and that wheel
installs into a fresh virtualenv that has nothing of this project, with its dependencies from the package index.
The installed SDK evaluates, and its OpenFeature extra works. (`pip install ./client` from a checkout goes through
the same build backend and setup.cfg as the wheel built here.)"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run inside the fresh virtualenv: the SDK must come from there, not from this checkout.
CHECK = """
import sys, flagsvc_client
from flagsvc_client import FlagClient
assert flagsvc_client.__file__.startswith(sys.prefix), flagsvc_client.__file__
snapshot = {"epoch": "e", "version": 1, "flags": {"f": {"key": "f", "state": "rolling", "percent": 100.0,
                                                      "revision": 1, "salt": "f"}}}
client = FlagClient(offline=True, bootstrap=snapshot)
assert client.is_enabled("f", "user-1") is True and client.is_enabled("missing", "user-1") is False
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from flagsvc_client.openfeature import FlagsvcProvider
api.set_provider_and_wait(FlagsvcProvider(client))
details = api.get_client().get_boolean_details("f", False, EvaluationContext("user-1"))
assert (details.value, details.variant) == (True, "canary"), details
print("installed SDK ok")
"""


def fresh_venv(path: Path) -> Path:
    """A virtualenv with nothing in it (no pip either: pip_install drives this one's pip with --python, which
    saves the seconds ensurepip takes)."""
    venv.EnvBuilder(with_pip=False, clear=True).create(path)
    return path / "bin" / "python"


def pip_install(python: Path, *what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--disable-pip-version-check", "-q", *what], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_built_wheel_installs_into_a_fresh_venv_and_evaluates(tmp_path):
    built = subprocess.run([sys.executable, str(ROOT / "dev.py"), "build", "--dist", str(tmp_path / "dist"),
                            "flagsvc-client"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("flagsvc_client-*-py3-none-any.whl")
    assert str(wheel) in built.stdout
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, f"{wheel}[openfeature]")  # the dependencies (mmh3, openfeature-sdk) from the index
    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0 and "installed SDK ok" in done.stdout, done.stdout + done.stderr

#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+.

    python3 dev.py serve [flagsvc serve options]   # the server, on an embedded Redis unless FLAGSVC_REDIS_URL
    python3 dev.py test  [pytest options]          # ruff, mypy, then the whole test suite (real Redis included)
    python3 dev.py test --fast [pytest options]    # ruff, mypy, then the suite without tests marked slow (<1 min)
    python3 dev.py run CMD [ARGS]                  # any command from the project's virtualenv (flagctl, ...)
    python3 dev.py build [--dist DIR] [flagsvc-client] [flagsvc]   # wheels into dist/ (both by default)

`build` makes the wheels with `pip wheel --no-deps` (setuptools comes from the package index, in pip's isolated
build environment); `pip install dist/flagsvc_client-*.whl` then installs the SDK anywhere (client/README.md).
`test` stops at the first step that fails. `--fast` leaves out the tests marked `@pytest.mark.slow` (soaks, end to
end runs, real `flagsvc serve` processes): the loop to run while working; the whole suite is what CI runs.

The first call creates `.venv/` and installs both distributions (server and SDK) into it in editable mode; a
later call reinstalls only when setup.cfg or client/setup.cfg changed. Nothing is installed outside `.venv/`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flagsvc-installed"
INSTALL_INPUTS = ("setup.cfg", "pyproject.toml", "client/setup.cfg", "client/pyproject.toml")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update(name.encode())
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv/ ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing flagsvc and flagsvc-client into .venv/ ...", file=sys.stderr, flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", str(ROOT / "client"), "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def _exec(argv: list[str]) -> int:
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.call(argv, cwd=ROOT, env=env)


def _replace_process(argv: list[str]) -> None:
    """Become the command, so signals (Ctrl-C, SIGTERM from a supervisor) reach it directly."""
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    os.chdir(ROOT)
    if os.name == "nt":
        sys.exit(subprocess.call(argv, env=env))
    os.execvpe(argv[0], argv, env)


DISTRIBUTIONS = {"flagsvc-client": ROOT / "client", "flagsvc": ROOT}


def build(args: list[str]) -> int:
    """Wheels of the named distributions (default: both) into --dist (default: dist/); prints their paths."""
    dist = ROOT / "dist"
    if "--dist" in args:
        at = args.index("--dist")
        if at + 1 >= len(args):
            print("dev.py build: --dist needs a folder", file=sys.stderr)
            return 2
        dist = Path(args[at + 1]).resolve()
        args = args[:at] + args[at + 2:]
    unknown = [name for name in args if name not in DISTRIBUTIONS]
    if unknown:
        print(f"dev.py build: unknown distribution(s) {', '.join(unknown)}; known: {', '.join(DISTRIBUTIONS)}",
              file=sys.stderr)
        return 2
    dist.mkdir(parents=True, exist_ok=True)
    for name in args or list(DISTRIBUTIONS):
        source = DISTRIBUTIONS[name]
        shutil.rmtree(source / "build", ignore_errors=True)  # setuptools reuses build/: no stale module may ship
        code = _exec([str(BIN / "python"), "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                      "--wheel-dir", str(dist), str(source)])
        shutil.rmtree(source / "build", ignore_errors=True)
        if code != 0:
            return code
        wheel = dist / f"{name.replace('-', '_')}-{_version(source)}-py3-none-any.whl"
        print(wheel if wheel.exists() else f"dev.py build: {name} built, but {wheel} is not there")
    return 0


def _version(source: Path) -> str:
    for line in (source / "setup.cfg").read_text().splitlines():
        if line.replace(" ", "").startswith("version="):
            return line.split("=", 1)[1].strip()
    return "0"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in ("serve", "test", "run", "build"):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help", "help") else 2
    command, rest = argv[0], argv[1:]
    if command == "build":  # needs pip only: the project need not be installed (nor reinstalled) to be built
        if not (BIN / "python").exists():
            print("dev.py: creating .venv/ ...", file=sys.stderr, flush=True)
            venv.EnvBuilder(with_pip=True).create(VENV)
        return build(rest)
    ensure_venv()
    try:
        if command == "serve":
            _replace_process([str(BIN / "flagsvc"), "serve", *rest])
        if command == "run":
            _replace_process(rest)
        fast = "--fast" in rest
        rest = [arg for arg in rest if arg != "--fast"]
        for check in ([str(BIN / "ruff"), "check", "."], [str(BIN / "mypy")]):  # mypy: configured in pyproject.toml
            code = _exec(check)
            if code != 0:
                return code
        _replace_process([str(BIN / "python"), "-m", "pytest", *(["-m", "not slow"] if fast else []), *rest])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

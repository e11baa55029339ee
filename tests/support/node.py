"""Node.js for the tests: published npm packages installed from a committed package.json and package-lock.json into
a temporary folder (`npm ci`), and a long-lived node script spoken to in JSON lines. Nothing is skipped: without
node or npm, or when the registry cannot be reached, the set-up fails with npm's own output."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

INSTALL_TIMEOUT = 300.0


def install(source: Path, target: Path) -> Path:
    """Copy `source` (package.json, package-lock.json, the scripts) to `target` and `npm ci` there; `target`."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed on PATH for the JavaScript interop tests (Node.js 18+)"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, f"npm ci failed in {target} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return target


class NodeScript:
    """`node script args...`, kept running: `ask(command)` writes one JSON line to its stdin and returns the JSON
    line it answers. A script that dies or stays silent past the timeout fails the test with its stderr."""

    def __init__(self, script: Path, *args: str) -> None:
        self.proc = subprocess.Popen(["node", str(script), *args], cwd=script.parent, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def ask(self, command: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node gave no answer in {timeout} s:\n{''.join(self._stderr)}") from None
        assert line is not None, f"node exited ({self.proc.poll()}):\n{''.join(self._stderr)}"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

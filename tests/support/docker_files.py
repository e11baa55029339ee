"""Reading the docker/ deployment files (the Dockerfile's instructions, the compose file, env files), for the
tests that check them statically and the one that runs the image's commands natively."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def dockerfile_instructions(path: Path = DOCKER / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends with a continuation line"
    return instructions


def exec_form(instruction: str) -> list[str]:
    """The JSON array of a CMD/ENTRYPOINT (or HEALTHCHECK ... CMD) in exec form."""
    args = [rest for keyword, rest in dockerfile_instructions() if keyword == instruction]
    assert len(args) == 1, f"expected one {instruction}, found {len(args)}"
    text = args[0]
    if instruction == "HEALTHCHECK":
        text = text[text.index(" CMD ") + len(" CMD "):] if " CMD " in text else text.removeprefix("CMD ")
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), f"{instruction} is not exec form"
    return value


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def flagsvc_services(spec: dict) -> dict[str, dict]:
    return {name: s for name, s in spec["services"].items()
            if isinstance(s.get("build"), dict) and s["build"].get("dockerfile") == "docker/Dockerfile"}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            env[key.strip()] = value.strip()
    return env

"""The `flagsvc` command (placeholder until serve lands)."""


def main() -> None:
    raise SystemExit("flagsvc: not yet")

"""flagsvc-client: evaluate flagsvc rollouts locally and report their outcomes.

from flagsvc_client import FlagClient
client = FlagClient("http://127.0.0.1:8080", sdk_key="...")
if client.is_enabled("new_checkout", user_id): ...
"""

from flagsvc_client.client import FlagClient
from flagsvc_client.protocol.bucketing import bucket, is_canary, threshold
from flagsvc_client.protocol.sketch import LatencySketch
from flagsvc_client.result import Evaluation, Reason, Status
from flagsvc_client.settings import ClientSettings
from flagsvc_client.snapshot import FlagConfig, Snapshot, SnapshotError, parse_snapshot

__all__ = [
    "ClientSettings",
    "Evaluation",
    "FlagClient",
    "FlagConfig",
    "LatencySketch",
    "Reason",
    "Snapshot",
    "SnapshotError",
    "Status",
    "bucket",
    "is_canary",
    "parse_snapshot",
    "threshold",
]

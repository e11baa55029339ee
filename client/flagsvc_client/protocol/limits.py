"""The protocol's constants and limits, importable without `typing` (the SDK's import time is budgeted).

A server refuses a batch past these limits, so an SDK must cut its batches to fit.
"""

PROTOCOL_VERSION = 1
ARMS = ("stable", "canary")
# States in which nobody is canary, allow list included: the kill switch kills for everyone.
KILLED_STATES = frozenset({"off", "rolled_back"})

MAX_COUNT = 10**9  # any one counter of one arm in one batch
# Each arm's outcomes are also counted per user bucket (a slice of the user's hash the arm assignment does not
# use), so the judge can measure how much users differ from each other: users, not requests, are randomised.
UNIT_BUCKETS = 64
MAX_BATCH_FLAGS = 1_000  # flags in one batch
MAX_FLAG_KEY_LENGTH = 128
BATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}\Z"
REPORTER_PATTERN = r"^[A-Za-z0-9_-]{8,64}\Z"  # an SDK instance's id, new in every process
SNAPSHOT_EVENT = "snapshot"  # the Server-Sent Event that carries a snapshot on /sdk/v1/stream
# The features a snapshot flag may list in `requires` (docs/protocol.md, "Features"): an SDK answers the caller's
# default, with reason `unsupported`, for a flag requiring one it does not know.
FEATURE_SEGMENTS = "segments"  # excluded_segments / eligible_segments, evaluated against the context
FEATURE_BUCKET_BY = "bucket_by"  # the rollout hashes a context attribute instead of the user id
KNOWN_FEATURES = frozenset({FEATURE_SEGMENTS, FEATURE_BUCKET_BY})
# Stratified outcomes (docs/protocol.md, "Strata"): a flag's analysis may name one or two context attributes
# (`stratify_by`); SDKs then count each arm's outcomes per stratum label, the attributes' values joined by
# STRATUM_JOIN. A batch names at most MAX_STRATA labels per flag, the rest pooled under STRATUM_OTHER; the server
# keeps at most MAX_STRATA labels per flag revision (later ones also pooled). Outcomes with no value are sent under
# no label: the judge counts them as one more stratum. Stratifying changes what is reported, not the answers, so it
# is not a `requires` feature: an SDK that does not know it evaluates the flag and reports its outcomes unlabelled.
MAX_STRATIFY_BY = 2
MAX_STRATA = 20
MAX_STRATUM_LABEL_LENGTH = 128  # longer labels are pooled under STRATUM_OTHER by the SDK, refused by the server
STRATUM_OTHER = "~other"
STRATUM_JOIN = "|"

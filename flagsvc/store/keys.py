"""Every Redis key and channel flagsvc uses, built here and nowhere else.

All keys start with the namespace (default ``flagsvc:``, without braces), so environments can share one Redis.
Every key of one flag carries the hash tag ``{<flag key>}``, and every atomic operation (a Lua script) touches
keys of one hash slot only, so the same code runs unchanged on Redis Cluster: a flag's scripts touch that
flag's keys; the lease script the lease and the fencing counter, which share a slot (see ``controller_lease``);
the epoch script the epoch alone. The other global keys are each written by single commands, in an order that
makes a crash between two of them harmless (below, and docs/redis-ha.md).

Keys (type; what it holds; who writes it; expiry):

- ``<ns>flag:{<key>}`` (hash): ``revision`` and ``doc`` (the flag as JSON); operators' API and the controller,
  through the compare-and-set script; never expires.
- ``<ns>history:{<key>}`` (list): history entries as JSON, newest first, capped at HISTORY_CAP; written by the
  same script as the flag; never expires; deleted with the flag.
- ``<ns>outcomes:{<key>}`` (hash): outcome aggregates of the flag's current revision: ``revision``,
  ``epoch`` (random, set when the aggregates start: a reset shows as a new epoch), ``<arm>:count``,
  ``<arm>:errors``, ``<arm>:error_users``, ``<arm>:lat:<sketch bucket>``; the outcomes script,
  which starts it afresh on the first batch of a new revision; expires OUTCOMES_TTL after the last batch;
  deleted with the flag.
- ``<ns>reporters:{<key>}`` (hash): the current revision's requests and errors per reporter (SDK instance) and
  arm, ``<reporter>|<arm>:count`` and ``<reporter>|<arm>:errors``; the outcomes script, reset with the aggregates;
  same expiry; deleted with the flag.
- ``<ns>batch:{<key>}:<batch_id>`` (string): marks a batch as applied to this flag; the outcomes script;
  expires after BATCH_MARKER_TTL, longer than any batch is accepted for (its window must have ended less than
  PlausibilityLimits.max_batch_age ago), so a retry always finds its marker. Batches are rate-limited per SDK
  key, so the markers alive at once are bounded: rate x BATCH_MARKER_TTL x flags per batch.
- ``<ns>idem:{<key>}:<Idempotency-Key>`` (hash): ``fingerprint`` (the request) and ``answer`` (its first
  answer) of an operator's write with an Idempotency-Key; written by the same script as the change, so a retry
  after a lost answer replays it; expires after IDEMPOTENCY_TTL; outlives a delete of the flag.
- ``<ns>ingest:{<key>}`` (hash): ``accepted``, ``duplicate``, ``stale`` batch counts; the outcomes script.
- ``<ns>ingest:unknown`` (string): batch entries for flags that do not exist; the API.
- ``<ns>judge:{<key>}`` (string): the judge record (its state and last verdict for the flag's current revision), JSON;
  the controller leader; deleted with the flag.
- ``<ns>timeline:{<key>}:<incarnation>:<revision>`` (list): the revision's time series, one JSON point per kept
  controller look, oldest first (domain/timeline.py); ``<ns>timeline-meta:{<key>}:<incarnation>:<revision>``
  (hash): ``looks`` and ``stride`` of its downsampling; ``<ns>timeline-revisions:{<key>}:<incarnation>``
  (sorted set): the revisions with points, the newest TIMELINE_REVISIONS. The incarnation is the flag's
  ``created_at``, so a flag deleted and created again under the same key starts a timeline of its own. All
  three written by one script (lua/timeline_add.lua) after each look of the controller leader; they expire
  TIMELINE_TTL after the last look, so a deleted flag's timeline goes by itself.
- ``<ns>audit`` (stream): the audit log, one entry (field ``doc``, JSON) per change by anyone (flags, segments,
  webhooks, the controller's moves), ids from the writers' clocks (ms); lua/audit_append.lua, which trims it
  to FLAGSVC_AUDIT_MAX_ENTRIES and FLAGSVC_AUDIT_MAX_DAYS; outlives every flag.
- ``<ns>console-session:<digest>`` (string): a signed-in console session (JSON: the token's name and scope, its
  CSRF token, when it ends), under the SHA-256 of its cookie, never the cookie itself; the console's sign-in;
  expires when the session does; deleted by signing out.
- ``<ns>webhooks:config{<ns>webhooks}`` (hash): webhook id -> the webhook (JSON, with its signing secret); the
  API's webhook commands. Every webhook key carries the hash tag ``{<ns>webhooks}``: one slot, so each delivery
  script (lua/webhook_*.lua) touches keys of one slot on a Cluster.
- ``<ns>webhooks:event{<ns>webhooks}:<event id>`` (string): marks an event as enqueued (SET NX in
  lua/webhook_enqueue.lua), so two replicas' controllers or a retried write enqueue it once; expires after
  WEBHOOK_KEEP.
- ``<ns>webhooks:due{<ns>webhooks}`` (sorted set): delivery id -> when it is due (ms); a claimed delivery's score
  is its lease's end, so no other worker claims it before the lease ends (lua/webhook_claim.lua).
- ``<ns>webhooks:delivery{<ns>webhooks}:<delivery id>`` (hash): one event for one webhook: ``webhook``,
  ``event_id``, ``event``, ``flag``, ``body``, ``status``, ``attempts``, ``last_error``, ``response_code``,
  ``claim``, times in ms; expires WEBHOOK_KEEP after its last change.
- ``<ns>webhooks:log{<ns>webhooks}:<webhook id>`` (list): the webhook's delivery ids, newest first, capped at
  WEBHOOK_LOG_CAP (the delivery log); deleted with the webhook.
- ``<ns>controller:lease{<ns>controller:fence}`` (string): ``<owner> <fencing token> <expiry, ms>`` of the
  controller leader; lease script; expires after the lease time unless renewed. Its hash tag is the fencing
  counter's whole name, so both are in one slot and the counter keeps the name it always had (a counter
  renamed would restart below the tokens already on the flags, and fence every new leader out).
- ``<ns>controller:fence`` (string): the fencing counter, +1 for every new leadership; lease script.
- The flag hash's ``fence`` field: the highest fencing token that acted on the flag; a controller write with a
  lower token is refused (replace script), so a deposed leader cannot change anything.
- ``<ns>flags`` (set): every flag key, the listing index; create (before the flag), delete (after it).
- ``<ns>config:version`` (string): the config version, +1 after every change; API and controller.
- ``<ns>config:epoch`` (string): a random id of this dataset, set once with SET NX by the first server;
  replaced by the epoch script (compare-and-set) when a reset dataset is named anew.
- ``<ns>config:changes`` (pub/sub channel): ``<epoch>-<version>``, published after every change. On a
  Cluster a PUBLISH reaches the subscribers of every node (the cluster bus carries it), so each process
  subscribes on any one node.
- ``<ns>config:reset`` (string): the open notice that the dataset was reset and flags vanished (JSON, see
  flagsvc/service/dataset.py); the first server to notice, SET NX; removed on restore or acknowledgement.

The listing index lives outside the flags' hash slots, so it cannot change atomically with a flag. It is
written so that a crash between the two steps leaves at worst an index entry without a flag, which listing
skips (SADD before create, SREM after delete); never a flag missing from the index.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "flagsvc:"
OUTCOMES_TTL = 30 * 24 * 3600
BATCH_MARKER_TTL = 3600
TIMELINE_TTL = 30 * 24 * 3600
WEBHOOK_KEEP = 7 * 24 * 3600
WEBHOOK_LOG_CAP = 100


@dataclass(frozen=True)
class Keys:
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        # A brace in the namespace would become the hash tag of every key (all in one slot) or, as "{}", break
        # the flags' own tags apart on a Cluster.
        if "{" in self.namespace or "}" in self.namespace:
            raise ValueError(f"a Redis namespace cannot contain braces: {self.namespace!r}")

    def flag(self, key: str) -> str:
        return f"{self.namespace}flag:{{{key}}}"

    def history(self, key: str) -> str:
        return f"{self.namespace}history:{{{key}}}"

    def outcomes(self, key: str) -> str:
        return f"{self.namespace}outcomes:{{{key}}}"

    def batch_marker(self, key: str, batch_id: str) -> str:
        return f"{self.namespace}batch:{{{key}}}:{batch_id}"

    def idempotency(self, key: str, idempotency_key: str) -> str:
        return f"{self.namespace}idem:{{{key}}}:{idempotency_key}"

    def reporters(self, key: str) -> str:
        return f"{self.namespace}reporters:{{{key}}}"

    def ingest_counters(self, key: str) -> str:
        return f"{self.namespace}ingest:{{{key}}}"

    def judgement(self, key: str) -> str:
        return f"{self.namespace}judge:{{{key}}}"

    def timeline(self, key: str, incarnation: str, revision: int) -> str:
        return f"{self.namespace}timeline:{{{key}}}:{incarnation}:{revision}"

    def timeline_meta(self, key: str, incarnation: str, revision: int) -> str:
        return f"{self.namespace}timeline-meta:{{{key}}}:{incarnation}:{revision}"

    def timeline_revisions(self, key: str, incarnation: str) -> str:
        return f"{self.namespace}timeline-revisions:{{{key}}}:{incarnation}"

    @property
    def audit(self) -> str:
        return f"{self.namespace}audit"

    def console_session(self, digest: str) -> str:
        return f"{self.namespace}console-session:{digest}"

    @property
    def _webhooks_tag(self) -> str:
        return f"{{{self.namespace}webhooks}}"

    @property
    def webhook_configs(self) -> str:
        return f"{self.namespace}webhooks:config{self._webhooks_tag}"

    def webhook_event(self, event_id: str) -> str:
        return f"{self.namespace}webhooks:event{self._webhooks_tag}:{event_id}"

    @property
    def webhook_due(self) -> str:
        return f"{self.namespace}webhooks:due{self._webhooks_tag}"

    def webhook_delivery(self, delivery_id: str) -> str:
        return f"{self.namespace}webhooks:delivery{self._webhooks_tag}:{delivery_id}"

    def webhook_log(self, webhook_id: str) -> str:
        return f"{self.namespace}webhooks:log{self._webhooks_tag}:{webhook_id}"

    @property
    def controller_lease(self) -> str:
        return f"{self.namespace}controller:lease{{{self.controller_fence}}}"

    @property
    def controller_fence(self) -> str:
        return f"{self.namespace}controller:fence"

    @property
    def ingest_unknown(self) -> str:
        return f"{self.namespace}ingest:unknown"

    @property
    def index(self) -> str:
        return f"{self.namespace}flags"

    @property
    def config_version(self) -> str:
        return f"{self.namespace}config:version"

    @property
    def config_epoch(self) -> str:
        return f"{self.namespace}config:epoch"

    @property
    def changes_channel(self) -> str:
        return f"{self.namespace}config:changes"

    @property
    def dataset_notice(self) -> str:
        return f"{self.namespace}config:reset"

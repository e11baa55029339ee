// Per-arm outcomes for flagsvc's canary judge, from a service that evaluates over OFREP (docs/ofrep.md).
//
// Record each request's outcome with the evaluation details it was served with: the arm is the details' variant
// ("canary" or "stable"), the revision and the user bucket come from its flag metadata (`revision`, `unit`). A user
// the flag counts in neither arm (outside a targeted flag's population) has no `unit`, and is not recorded: the
// judge compares canary and stable within the population only. `flush()` sends what was recorded since the last
// flush as one batch to POST /sdk/v1/outcomes (docs/protocol.md), the endpoint the Python SDK reports to.
import { randomBytes } from 'node:crypto';

// The latency sketch of docs/protocol.md (client/flagsvc_client/protocol/sketch.py): bucket ceil(log2(ms) / log2(1.02)),
// clamped to the sketch's range. It is part of the wire format: every reporter must compute it this way.
const INV_LOG2_GAMMA = 1 / Math.log2(1.02);
const MIN_INDEX = Math.ceil(Math.log2(0.001) * INV_LOG2_GAMMA);
const MAX_INDEX = Math.ceil(Math.log2(3_600_000) * INV_LOG2_GAMMA);

function sketchIndex(ms) {
  if (!(ms > 0.001)) return MIN_INDEX;
  if (ms >= 3_600_000) return MAX_INDEX;
  return Math.ceil(Math.log2(ms) * INV_LOG2_GAMMA);
}

function newArm() {
  return { count: 0, errors: 0, errorUsers: new Set(), latency: new Map(), units: new Map() };
}

export class FlagsvcOutcomes {
  constructor({ url, sdkKey, fetchImplementation = fetch }) {
    this.url = url.replace(/\/$/, '');
    this.sdkKey = sdkKey;
    this.fetch = fetchImplementation;
    this.reporter = randomBytes(8).toString('hex'); // this process: the server weighs reporters against each other
    this.arms = new Map(); // "flag\u0000revision\u0000arm" -> tallies
    this.windowStart = Date.now() / 1000;
  }

  /** One request's outcome: `details` as getBooleanDetails answered it, `ok` false for a failed request. */
  record(flagKey, targetingKey, details, ok, latencyMs) {
    const metadata = details.flagMetadata ?? {};
    const arm = details.variant;
    if (details.errorCode || (arm !== 'canary' && arm !== 'stable')) return false; // the default: no arm
    if (typeof metadata.revision !== 'number' || typeof metadata.unit !== 'number') return false; // not counted
    const key = `${flagKey}\u0000${metadata.revision}\u0000${arm}`;
    let tally = this.arms.get(key);
    if (!tally) this.arms.set(key, (tally = newArm()));
    tally.count += 1;
    const unit = tally.units.get(metadata.unit) ?? [0, 0];
    unit[0] += 1;
    if (!ok) {
      tally.errors += 1;
      tally.errorUsers.add(String(targetingKey));
      unit[1] += 1;
    }
    tally.units.set(metadata.unit, unit);
    if (latencyMs !== undefined) {
      const index = sketchIndex(latencyMs);
      tally.latency.set(index, (tally.latency.get(index) ?? 0) + 1);
    }
    return true;
  }

  /** Send everything recorded since the last flush; the server's receipt (null when there was nothing). */
  async flush() {
    const end = Date.now() / 1000;
    const flags = {};
    for (const [key, tally] of this.arms) {
      const [flag, revision, arm] = key.split('\u0000');
      const entry = (flags[flag] ??= {});
      const forRevision = (entry[revision] ??= { revision: Number(revision), arms: {} });
      forRevision.arms[arm] = {
        count: tally.count,
        errors: tally.errors,
        error_users: tally.errorUsers.size,
        latency: Object.fromEntries(tally.latency),
        units: Object.fromEntries(tally.units),
      };
    }
    this.arms = new Map();
    const start = this.windowStart;
    this.windowStart = end;
    // one batch per revision seen (a flag's entry holds one revision); usually there is just the one
    const batches = [];
    for (;;) {
      const batch = {};
      for (const [flag, revisions] of Object.entries(flags)) {
        const [revision] = Object.keys(revisions);
        if (revision === undefined) continue;
        batch[flag] = revisions[revision];
        delete revisions[revision];
      }
      if (Object.keys(batch).length === 0) break;
      batches.push(batch);
    }
    let receipt = null;
    for (const batch of batches) {
      receipt = await this.send({ batch_id: randomBytes(12).toString('hex'), reporter: this.reporter,
        window: { start, end: Math.max(end, start) }, sent_at: end, sdk: 'ofrep-node-example', flags: batch });
    }
    return receipt;
  }

  async send(body) {
    // Retried with the same batch_id, which the server counts once, on a lost connection, a 429 or a 503.
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await this.fetch(`${this.url}/sdk/v1/outcomes`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${this.sdkKey}`, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
      } catch (error) {
        if (attempt >= 4) throw error;
      }
      if (response && response.ok) return response.json();
      if (response && response.status !== 429 && response.status < 500) {
        throw new Error(`outcomes refused (${response.status}): ${await response.text()}`);
      }
      if (attempt >= 4) throw new Error(`outcomes not accepted after ${attempt + 1} attempts`);
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
    }
  }
}

// Drives the published @openfeature/ofrep-web-provider under @openfeature/web-sdk, on Node.js, for the interop
// test (tests/integration/test_ofrep_interop.py): the static-context provider that evaluates every flag with the
// bulk endpoint, keeps the ETag, and polls with If-None-Match. One provider for the life of the process, polling
// every POLL_MS; every response status the provider gets is counted. Commands on stdin, one JSON line each:
//   {"cmd": "evaluate", "flag": "f", "prefix": "user-", "count": 200}  -> {"values": "0110...", "reasons": {...}}
//        (one context after the other: each context change is a bulk evaluation)
//   {"cmd": "watch", "flag": "f", "user": "user-7", "until": true, "timeout_ms": 20000}
//        -> {"value": true, "statuses": {"200": 1, "304": 12}, "changed": 1, "ms": 850}
//        (the user's context set, then the provider left to poll until the flag's value is `until`, or with
//        "polls": n until it got n answers 304; the statuses and configuration changes counted since the context
//        was set or the last watch answered)
import { createInterface } from 'node:readline';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const [baseUrl, sdkKey, pollMs] = process.argv.slice(2);
let statuses = {};
async function countingFetch(request) {
  const response = await fetch(request);
  statuses[response.status] = (statuses[response.status] ?? 0) + 1;
  return response;
}

const provider = new OFREPWebProvider({
  baseUrl, headers: [["Authorization", `Bearer ${sdkKey}`]], pollInterval: Number(pollMs), cacheMode: 'disabled',
  fetchImplementation: countingFetch,
});
await OpenFeature.setContext({ targetingKey: 'startup' });
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();
let changes = 0;
client.addHandler(ProviderEvents.ConfigurationChanged, () => { changes += 1; });

async function evaluate({ flag, prefix, count }) {
  const values = [];
  const reasons = {};
  for (let i = 0; i < count; i++) {
    await OpenFeature.setContext({ targetingKey: `${prefix}${i}` });
    const details = client.getBooleanDetails(flag, true);
    values.push(details.errorCode ? 'd' : details.value ? '1' : '0');
    const why = details.errorCode ?? details.reason;
    reasons[why] = (reasons[why] ?? 0) + 1;
  }
  return { values: values.join(''), reasons };
}

async function watch({ flag, user, until, polls = 0, timeout_ms }) {
  if (OpenFeature.getContext().targetingKey !== user) {
    await OpenFeature.setContext({ targetingKey: user }); // its own bulk evaluation: not counted below
    // a poll already in flight when the context changed answers with the old context's ETag (a 200): let one
    // poll be answered before counting
    statuses = {};
    const waitFrom = Date.now();
    while (Object.keys(statuses).length === 0 && Date.now() - waitFrom < timeout_ms) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    statuses = {};
    changes = 0;
  }
  const started = Date.now();
  const done = () => (polls > 0 ? (statuses[304] ?? 0) >= polls : client.getBooleanValue(flag, !until) === until);
  while (!done() && Date.now() - started < timeout_ms) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const answer = { value: client.getBooleanValue(flag, !until), statuses, changed: changes, ms: Date.now() - started };
  statuses = {}; // the next watch of this user counts from here
  changes = 0;
  return answer;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  const answer = command.cmd === 'watch' ? await watch(command) : await evaluate(command);
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await OpenFeature.close();

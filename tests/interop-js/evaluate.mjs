// Drives the published @openfeature/ofrep-provider under @openfeature/server-sdk for the interop test
// (tests/integration/test_ofrep_interop.py). One provider for the life of the process; commands on stdin, one JSON
// line each, answers on stdout, one JSON line each:
//   {"flag": "f", "prefix": "user-", "count": 10000}  ->  {"values": "0110...", "reasons": {"SPLIT": n}, "errors": {}}
// `values` has one character per id (prefix + i): "1" true, "0" false, "d" the default after an error. An optional
// "attributes": [{...}, ...] adds attributes[i % length] to id i's evaluation context.
import { createInterface } from 'node:readline';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, sdkKey] = process.argv.slice(2);
const CONCURRENCY = 16;

await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers: { Authorization: `Bearer ${sdkKey}` } }));
const client = OpenFeature.getClient();

async function evaluate({ flag, prefix, count, attributes = [{}] }) {
  const values = new Array(count);
  const reasons = {};
  const errors = {};
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      // a default of `true` for a flag whose answers are mostly false: an error shows, never passes for "false"
      const context = { ...attributes[i % attributes.length], targetingKey: `${prefix}${i}` };
      const details = await client.getBooleanDetails(flag, true, context);
      if (details.errorCode) {
        values[i] = 'd';
        errors[details.errorCode] = (errors[details.errorCode] ?? 0) + 1;
      } else {
        values[i] = details.value ? '1' : '0';
        reasons[details.reason] = (reasons[details.reason] ?? 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { values: values.join(''), reasons, errors };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const answer = await evaluate(JSON.parse(line));
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await OpenFeature.close();

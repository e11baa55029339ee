// A Node.js service on flagsvc over OFREP (docs/ofrep.md): the published OpenFeature provider evaluates each
// request's flag on the server, the request takes the canary or the stable path, and its outcome is reported per
// arm (outcomes.mjs), so flagsvc's canary judge compares the two paths for this service too.
//
//   FLAGSVC_URL=http://127.0.0.1:8080 FLAGSVC_SDK_KEY=... FLAG=new_checkout npm start
//
// It simulates USERS requests (one per user id, user-0 ...), every 50th of them failing on either path, then
// flushes and prints what it recorded and the server's receipt as one JSON line.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { FlagsvcOutcomes } from './outcomes.mjs';

const url = process.env.FLAGSVC_URL ?? 'http://127.0.0.1:8080';
const sdkKey = process.env.FLAGSVC_SDK_KEY;
const flag = process.env.FLAG ?? 'new_checkout';
const users = Number(process.env.USERS ?? 500);
if (!sdkKey) throw new Error('set FLAGSVC_SDK_KEY (python3 dev.py serve prints it)');

await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: url, headers: { Authorization: `Bearer ${sdkKey}` } }));
const features = OpenFeature.getClient();
const outcomes = new FlagsvcOutcomes({ url, sdkKey });

function newCheckout(i) { if (i % 50 === 0) throw new Error('payment declined'); return 'canary'; }
function oldCheckout(i) { if (i % 50 === 0) throw new Error('payment declined'); return 'stable'; }

const recorded = { canary: { count: 0, errors: 0 }, stable: { count: 0, errors: 0 }, uncounted: 0 };
for (let i = 0; i < users; i++) {
  const userId = `user-${i}`;
  const details = await features.getBooleanDetails(flag, false, { targetingKey: userId });
  const started = performance.now();
  let ok = true;
  try {
    if (details.value) newCheckout(i); else oldCheckout(i);
  } catch {
    ok = false;
  }
  if (outcomes.record(flag, userId, details, ok, performance.now() - started)) {
    recorded[details.variant].count += 1;
    if (!ok) recorded[details.variant].errors += 1;
  } else {
    recorded.uncounted += 1;
  }
}
const receipt = await outcomes.flush();
process.stdout.write(JSON.stringify({ recorded, receipt }) + '\n');
await OpenFeature.close();

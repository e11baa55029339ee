-- Delete a flag and everything kept for it.
-- KEYS[1] flag hash, KEYS[2] history list, KEYS[3] outcome aggregates, KEYS[4] ingest counters,
-- KEYS[5] judge state, KEYS[6] aggregates per reporter
-- Returns 1 when the flag existed, 0 otherwise.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', unpack(KEYS))
return existed

-- Delete a flag and everything kept for it, if it is at the expected revision; remember the request's
-- idempotency key (that record is not the flag's: it outlives the delete, so a retry replays the answer).
-- KEYS[1] flag hash, KEYS[2] history list, KEYS[3] outcome aggregates, KEYS[4] ingest counters,
-- KEYS[5] judge state, KEYS[6] aggregates per reporter, KEYS[7] the idempotency record
-- ARGV[1] the expected revision, or '' for any; ARGV[2] the request's fingerprint ('' without an idempotency
-- key), ARGV[3] the record's TTL (s)
-- Returns 1 when deleted, 0 when there was no flag, -3 when the flag is at another revision (nothing deleted),
-- or {fingerprint, answer} when the idempotency key was used before (nothing done).
if ARGV[2] ~= '' then
  local kept = redis.call('HMGET', KEYS[7], 'fingerprint', 'answer')
  if kept[1] then
    return kept
  end
end
local revision = redis.call('HGET', KEYS[1], 'revision')
if not revision then
  return 0
end
if ARGV[1] ~= '' and revision ~= ARGV[1] then
  return -3
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[7], 'fingerprint', ARGV[2], 'answer', '')
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[3]))
end
return 1

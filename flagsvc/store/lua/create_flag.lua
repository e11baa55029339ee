-- Create a flag unless it exists, with its first history entry, and remember the request's idempotency key.
-- KEYS[1] flag hash, KEYS[2] history list, KEYS[3] the idempotency record (unused when ARGV[5] is '')
-- ARGV[1] flag JSON, ARGV[2] revision, ARGV[3] history entry JSON, ARGV[4] history cap,
-- ARGV[5] the request's fingerprint ('' without an idempotency key), ARGV[6] the answer to keep, ARGV[7] its TTL (s)
-- Returns 1 when created, 0 when the flag exists already, or {fingerprint, answer} when the idempotency key was
-- used before (nothing done: the caller replays the first answer).
if ARGV[5] ~= '' then
  local kept = redis.call('HMGET', KEYS[3], 'fingerprint', 'answer')
  if kept[1] then
    return kept
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'doc', ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], 'fingerprint', ARGV[5], 'answer', ARGV[6])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
end
return 1

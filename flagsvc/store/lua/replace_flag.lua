-- Compare-and-set a flag on its revision, and record the change in its history, all or nothing; with an
-- idempotency key, remember the request in the same step, so a retry after a lost answer changes nothing.
-- KEYS[1] flag hash, KEYS[2] history list, KEYS[3] the idempotency record (unused when ARGV[7] is '')
-- ARGV[1] expected current revision, ARGV[2] new flag JSON, ARGV[3] new revision,
-- ARGV[4] history entry JSON, ARGV[5] history cap,
-- ARGV[6] fencing token of the controller making the change, or '' for an operator,
-- ARGV[7] the request's fingerprint ('' without an idempotency key), ARGV[8] the answer to keep, ARGV[9] its TTL
-- Returns 1 when applied, 0 when the revision moved on (conflict), -1 when the flag does not exist,
-- -2 when a newer controller leader has fenced this flag (the caller's leadership is over), or
-- {fingerprint, answer} when the idempotency key was used before (nothing done).
if ARGV[7] ~= '' then
  local kept = redis.call('HMGET', KEYS[3], 'fingerprint', 'answer')
  if kept[1] then
    return kept
  end
end
local current = redis.call('HGET', KEYS[1], 'revision')
if not current then
  return -1
end
if ARGV[6] ~= '' then
  local fence = redis.call('HGET', KEYS[1], 'fence')
  if fence and tonumber(fence) > tonumber(ARGV[6]) then
    return -2
  end
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'revision', ARGV[3], 'doc', ARGV[2])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'fence', ARGV[6])
end
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[3], 'fingerprint', ARGV[7], 'answer', ARGV[8])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[9]))
end
return 1

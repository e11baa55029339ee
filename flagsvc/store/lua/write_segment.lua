-- Create, replace (compare-and-set on its revision) or delete one segment, all or nothing; with an idempotency
-- key, remember the request in the same step. Every key carries the segments' hash tag: one slot.
-- KEYS[1] the segments hash (name -> segment JSON), KEYS[2] the idempotency record (unused when ARGV[4] is '')
-- ARGV[1] segment name, ARGV[2] expected revision ('' to create: the name must be free),
-- ARGV[3] the new segment JSON ('' to delete), ARGV[4] the request's fingerprint ('' without an idempotency key),
-- ARGV[5] the answer to keep, ARGV[6] its TTL
-- Returns 1 when applied, 0 when the revision moved on, -1 when there is no such segment, -2 when creating a name
-- that is taken, or {fingerprint, answer} when the idempotency key was used before (nothing done).
if ARGV[4] ~= '' then
  local kept = redis.call('HMGET', KEYS[2], 'fingerprint', 'answer')
  if kept[1] then
    return kept
  end
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then
    return -2
  end
else
  if not current then
    return -1
  end
  if tostring(cjson.decode(current)['revision']) ~= ARGV[2] then
    return 0
  end
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'fingerprint', ARGV[4], 'answer', ARGV[5])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
return 1

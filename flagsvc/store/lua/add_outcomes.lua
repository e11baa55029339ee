-- Add one batch's outcomes for one flag into the aggregates of the flag's current revision, exactly once.
-- KEYS[1] flag hash, KEYS[2] batch marker, KEYS[3] the flag's aggregates hash, KEYS[4] ingest counters hash,
-- KEYS[5] the aggregates per reporter (same revision as KEYS[3])
-- ARGV[1] the revision the SDK measured, ARGV[2] marker TTL (s), ARGV[3] aggregates TTL (s),
-- ARGV[4] a JSON object {aggregate field: increment} (one argument: hundreds of separate ones cost the client
--   more to encode than the whole script costs Redis to run), ARGV[5] the reporter ("" for none),
--   ARGV[6] a fresh random epoch, written only when this batch starts the aggregates (so a reset that refills
--   them between two looks of the judge shows as a new epoch, even when no total went down)
-- Returns 'accepted', 'duplicate', 'stale' (another revision is current) or 'unknown' (no such flag).
local current = redis.call('HGET', KEYS[1], 'revision')
if not current then
  return 'unknown'
end
if current ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[4], 'stale', 1)
  return 'stale'
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('HINCRBY', KEYS[4], 'duplicate', 1)
  return 'duplicate'
end
-- The aggregates hash holds one revision only: the first batch of a new revision starts it afresh.
if redis.call('HGET', KEYS[3], 'revision') ~= ARGV[1] then
  redis.call('DEL', KEYS[3], KEYS[5])
  redis.call('HSET', KEYS[3], 'revision', ARGV[1], 'epoch', ARGV[6])
end
for field, n in pairs(cjson.decode(ARGV[4])) do
  redis.call('HINCRBY', KEYS[3], field, string.format('%d', n))
  -- per reporter: requests and errors of each arm ("<reporter>|<arm>:count", "<reporter>|<arm>:errors")
  if ARGV[5] ~= '' and (string.match(field, '^%a+:count$') or string.match(field, '^%a+:errors$')) then
    redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|' .. field, string.format('%d', n))
  end
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
if ARGV[5] ~= '' then
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]))
end
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
return 'accepted'

-- Compare-and-set a flag on its revision, and record the change in its history, all or nothing.
-- KEYS[1] flag hash, KEYS[2] history list
-- ARGV[1] expected current revision, ARGV[2] new flag JSON, ARGV[3] new revision,
-- ARGV[4] history entry JSON, ARGV[5] history cap
-- Returns 1 when applied, 0 when the revision moved on (conflict), -1 when the flag does not exist.
local current = redis.call('HGET', KEYS[1], 'revision')
if not current then
  return -1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'revision', ARGV[3], 'doc', ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
return 1

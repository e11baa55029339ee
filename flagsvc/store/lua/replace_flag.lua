-- Compare-and-set a flag on its revision, and record the change in its history, all or nothing.
-- KEYS[1] flag hash, KEYS[2] history list
-- ARGV[1] expected current revision, ARGV[2] new flag JSON, ARGV[3] new revision,
-- ARGV[4] history entry JSON, ARGV[5] history cap,
-- ARGV[6] fencing token of the controller making the change, or '' for an operator
-- Returns 1 when applied, 0 when the revision moved on (conflict), -1 when the flag does not exist,
-- -2 when a newer controller leader has fenced this flag (the caller's leadership is over).
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
return 1

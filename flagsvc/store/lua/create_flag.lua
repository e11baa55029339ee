-- Create a flag unless it exists, with its first history entry.
-- KEYS[1] flag hash, KEYS[2] history list
-- ARGV[1] flag JSON, ARGV[2] revision, ARGV[3] history entry JSON, ARGV[4] history cap
-- Returns 1 when created, 0 when the flag exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'doc', ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1

-- A new controller leader raises its fencing token on a flag before acting, so the old leader's writes fail.
-- KEYS[1] flag hash; ARGV[1] token. Returns 1 when raised (or equal), 0 when a newer token is there already.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local fence = redis.call('HGET', KEYS[1], 'fence')
if fence and tonumber(fence) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1])
return 1

-- Give the controller lease up, if the caller still holds it.
-- KEYS[1] lease string; ARGV[1] owner id. Returns 1 when released.
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^(%S+) ') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

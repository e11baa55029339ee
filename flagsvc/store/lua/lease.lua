-- Take or keep the controller lease. One leader at a time; every new leadership gets a larger fencing token.
-- KEYS[1] lease string ("<owner> <token> <expires, ms>"), KEYS[2] fencing counter
-- ARGV[1] owner id, ARGV[2] lease time (ms), ARGV[3] now (ms), or "" for Redis's own clock (TIME)
-- Returns the fencing token when the caller holds the lease (taken now or renewed), or 0 when another does.
-- The key also expires by itself (PX), so a lease nobody renews never outlives its time on Redis's clock.
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl = tonumber(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held then
  local owner, token, expires = string.match(held, '^(%S+) (%d+) ?(%d*)$')
  -- a lease without an expiry was written by an earlier version: it holds until its PX runs out
  if owner and (expires == '' or tonumber(expires) > now) then
    if owner ~= ARGV[1] then
      return 0
    end
    redis.call('SET', KEYS[1], owner .. ' ' .. token .. ' ' .. string.format('%d', now + ttl), 'PX', ttl)
    return tonumber(token)
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token .. ' ' .. string.format('%d', now + ttl), 'PX', ttl)
return token

-- Take or keep the controller lease. One leader at a time; every new leadership gets a larger fencing token.
-- KEYS[1] lease string ("<owner> <token>"), KEYS[2] fencing counter
-- ARGV[1] owner id, ARGV[2] lease time (ms)
-- Returns the fencing token when the caller holds the lease (taken now or renewed), or 0 when another does.
local held = redis.call('GET', KEYS[1])
if held then
  local owner, token = string.match(held, '^(%S+) (%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', tonumber(ARGV[2]))
return token

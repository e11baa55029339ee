-- Claim one due delivery for one attempt: its due time becomes the end of the claim's lease, so no other worker
-- claims it before then (a worker that dies mid-attempt leaves it to be claimed again when the lease ends).
-- KEYS[1] the due set   KEYS[2] the delivery hash
-- ARGV[1] the delivery id   ARGV[2] now (ms)   ARGV[3] lease (ms)   ARGV[4] the claim's token (random)
-- Returns the delivery's fields (a flat list, attempts counting this one), or false when it is not due or gone.
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], 'claim', ARGV[4], 'status', 'delivering', 'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
return redis.call('HGETALL', KEYS[2])

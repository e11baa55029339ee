-- Record an attempt's outcome, if the claim is still the caller's (a worker whose lease ended and whose delivery
-- was claimed again records nothing). Then the delivery is done (ARGV[7] empty) or due again at ARGV[7].
-- KEYS[1] the due set   KEYS[2] the delivery hash
-- ARGV[1] the delivery id   ARGV[2] the claim's token   ARGV[3] now (ms)   ARGV[4] status   ARGV[5] last error
-- ARGV[6] response code ('' for none)   ARGV[7] next attempt (ms, '' for none)   ARGV[8] keep (s)
-- Returns 1 when recorded, 0 when the claim was not the caller's.
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[4], 'last_error', ARGV[5], 'response_code', ARGV[6], 'claim', '',
           'updated_at', ARGV[3], 'next_at', ARGV[7])
if ARGV[7] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
end
redis.call('EXPIRE', KEYS[2], ARGV[8])
return 1

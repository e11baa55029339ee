-- Replace a webhook's stored settings, only if it exists (an edit racing a delete does not bring it back).
-- KEYS[1] the webhook configs hash; ARGV[1] the webhook id; ARGV[2] its new JSON
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

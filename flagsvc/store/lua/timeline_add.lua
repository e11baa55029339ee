-- One controller look's point for a revision's time series, downsampled as domain/timeline.py's RevisionSeries.add
-- (every look until `cap` points, then every other point dropped and the stride doubled; a kept look always kept).
-- KEYS[1] the revision's points (list, JSON, oldest first)   KEYS[2] the revision's meta (hash: looks, stride)
-- KEYS[3] the flag incarnation's revisions (sorted set, score = revision)   all three carry the flag's hash tag
-- ARGV[1] the point (JSON)   ARGV[2] "1": keep it whatever the stride   ARGV[3] cap (points)   ARGV[4] revision
-- ARGV[5] time to live (ms) of all three keys   ARGV[6] revisions the sorted set keeps (the oldest drop out)
-- Returns 1 when the point was kept, 0 when the stride skipped it.
local seen = redis.call('HINCRBY', KEYS[2], 'looks', 1) - 1
local stride = tonumber(redis.call('HGET', KEYS[2], 'stride') or '1')
local kept = 0
if seen % stride == 0 or ARGV[2] == '1' then
  kept = 1
  local length = redis.call('RPUSH', KEYS[1], ARGV[1])
  if length > tonumber(ARGV[3]) then
    local all = redis.call('LRANGE', KEYS[1], 0, -1)
    local halved = {}
    for i = 1, #all - 1, 2 do halved[#halved + 1] = all[i] end
    halved[#halved + 1] = all[#all]  -- the last stays, as the first does
    redis.call('DEL', KEYS[1])
    redis.call('RPUSH', KEYS[1], unpack(halved))
    redis.call('HSET', KEYS[2], 'stride', stride * 2)
  end
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return kept

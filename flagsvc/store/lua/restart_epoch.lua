-- Name the dataset anew, if it is still named `expected` (a compare-and-set: the first server to notice a reset
-- restarts the epoch; the others find it restarted already and leave it).
-- KEYS[1] the config epoch string; ARGV[1] the expected epoch, ARGV[2] the new one.
-- Returns 1 when replaced, 0 when the epoch is another already.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0

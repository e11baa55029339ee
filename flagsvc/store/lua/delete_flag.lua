-- Delete a flag and everything kept for it.
-- KEYS[1] flag hash, KEYS[2] history list
-- Returns 1 when the flag existed, 0 otherwise.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return existed

-- Add one batch's outcomes for one flag into the aggregates of the flag's current revision, exactly once.
-- KEYS[1] flag hash, KEYS[2] batch marker, KEYS[3] the flag's aggregates hash, KEYS[4] ingest counters hash,
-- KEYS[5] the aggregates per reporter (same revision as KEYS[3])
-- ARGV[1] the revision the SDK measured, ARGV[2] marker TTL (s), ARGV[3] aggregates TTL (s),
-- ARGV[4] a JSON object {aggregate field: increment} (one argument: hundreds of separate ones cost the client
--   more to encode than the whole script costs Redis to run), ARGV[5] the reporter ("" for none),
--   ARGV[6] a fresh random epoch, written only when this batch starts the aggregates (so a reset that refills
--   them between two looks of the judge shows as a new epoch, even when no total went down),
--   ARGV[7], ARGV[8] the batch's window (start, end; Unix seconds), ARGV[9] how many reporters a revision
--   tracks by name (the rest add up as '~others'), ARGV[10] how many stratum labels a revision keeps (a label
--   past them adds up under ARGV[11], the pooled label)
-- Returns 'accepted', 'duplicate', 'stale' (another revision is current), 'unknown' (no such flag) or
-- 'overlapping' (this reporter already reported a window that overlaps this one: its outcomes would count twice).
local current = redis.call('HGET', KEYS[1], 'revision')
if not current then
  return 'unknown'
end
if current ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[4], 'stale', 1)
  return 'stale'
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('HINCRBY', KEYS[4], 'duplicate', 1)
  return 'duplicate'
end
-- The aggregates hash holds one revision only: the first batch of a new revision starts it afresh.
local fresh = redis.call('HGET', KEYS[3], 'revision') ~= ARGV[1]
-- One SDK instance's windows follow each other: a window reaching back before the end of one it already sent
-- (half a second of clock slack) would count the same moments twice.
local reporter = ARGV[5]
if reporter ~= '' and not fresh then
  local reported = redis.call('HGET', KEYS[5], reporter .. '|until')
  if reported and tonumber(ARGV[7]) < tonumber(reported) - 0.5 then
    redis.call('DEL', KEYS[2])
    redis.call('HINCRBY', KEYS[4], 'overlapping', 1)
    return 'overlapping'
  end
end
if fresh then
  redis.call('DEL', KEYS[3], KEYS[5])
  redis.call('HSET', KEYS[3], 'revision', ARGV[1], 'epoch', ARGV[6])
end
-- Reporters tracked by name are bounded: past the cap, new ones add up as one, '~others'.
if reporter ~= '' and redis.call('HEXISTS', KEYS[5], reporter .. '|until') == 0 then
  if tonumber(redis.call('HGET', KEYS[5], '~named') or '0') >= tonumber(ARGV[9]) then
    reporter = '~others'
  else
    redis.call('HINCRBY', KEYS[5], '~named', 1)
  end
end
if reporter ~= '' and reporter ~= '~others' then
  local reported = tonumber(redis.call('HGET', KEYS[5], reporter .. '|until') or '0')
  redis.call('HSET', KEYS[5], reporter .. '|until', string.format('%.3f', math.max(reported, tonumber(ARGV[8]))))
end
-- Stratum labels are bounded per revision: the first ARGV[10] named are kept (marked '|s|<label>', counted in
-- '|strata'); a counter of any other label ("<arm>:s:<label>:<n|e|u>") goes to the pooled label's.
local function stratum_field(field)
  local arm, label, kind = string.match(field, '^(%a+):s:(.*):([neu])$')
  if not label or label == ARGV[11] or redis.call('HEXISTS', KEYS[3], '|s|' .. label) == 1 then
    return field
  end
  if tonumber(redis.call('HGET', KEYS[3], '|strata') or '0') >= tonumber(ARGV[10]) then
    return arm .. ':s:' .. ARGV[11] .. ':' .. kind
  end
  redis.call('HSET', KEYS[3], '|s|' .. label, '1')
  redis.call('HINCRBY', KEYS[3], '|strata', 1)
  return field
end
for field, n in pairs(cjson.decode(ARGV[4])) do
  if string.find(field, ':s:', 1, true) then
    field = stratum_field(field)
  end
  redis.call('HINCRBY', KEYS[3], field, string.format('%d', n))
  -- per reporter: requests and errors of each arm ("<reporter>|<arm>:count", "<reporter>|<arm>:errors")
  if reporter ~= '' and (string.match(field, '^%a+:count$') or string.match(field, '^%a+:errors$')) then
    redis.call('HINCRBY', KEYS[5], reporter .. '|' .. field, string.format('%d', n))
  end
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
if ARGV[5] ~= '' then
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]))
end
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
return 'accepted'

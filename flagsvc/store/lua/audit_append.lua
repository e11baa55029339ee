-- Append one entry to the audit stream with an id from the caller's clock (never below the stream's last id, so
-- ids stay increasing whatever the replicas' clocks), then trim by count and by age.
-- KEYS[1] the audit stream   ARGV[1] now (ms)   ARGV[2] the entry (JSON)   ARGV[3] entries kept at most
-- ARGV[4] the oldest id kept (ms: now minus the age cap). Returns the entry's id.
local ms, seq = tonumber(ARGV[1]), 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local dash = string.find(info[i + 1], '-', 1, true)
      local last_ms, last_seq = tonumber(string.sub(info[i + 1], 1, dash - 1)), tonumber(string.sub(info[i + 1], dash + 1))
      if last_ms >= ms then ms, seq = last_ms, last_seq + 1 end
    end
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], string.format('%d-%d', ms, seq), 'doc', ARGV[2])
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[4])
return id

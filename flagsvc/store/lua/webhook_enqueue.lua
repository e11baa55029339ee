-- Enqueue one event for its webhooks, once: the event's marker is set with NX, and only the write that set it
-- creates the deliveries (two replicas raising the same event, or a retried write, enqueue nothing more).
-- KEYS[1] the event marker   KEYS[2] the due set   then per webhook: the delivery hash, the webhook's log list
-- ARGV[1] now (ms)   ARGV[2] keep (s)   ARGV[3] log entries kept   ARGV[4] event id   ARGV[5] event name
-- ARGV[6] flag   ARGV[7] body (JSON)   then per webhook: the delivery id, the webhook id.
-- Returns 1 when enqueued, 0 when the event was enqueued before.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
local n = (#KEYS - 2) / 2
for i = 1, n do
  local delivery, log, id, webhook = KEYS[1 + 2 * i], KEYS[2 + 2 * i], ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  redis.call('HSET', delivery, 'id', id, 'webhook', webhook, 'event_id', ARGV[4], 'event', ARGV[5], 'flag', ARGV[6],
             'body', ARGV[7], 'status', 'pending', 'attempts', 0, 'last_error', '', 'response_code', '',
             'claim', '', 'created_at', ARGV[1], 'updated_at', ARGV[1], 'next_at', ARGV[1])
  redis.call('EXPIRE', delivery, ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  redis.call('LPUSH', log, id)
  redis.call('LTRIM', log, 0, tonumber(ARGV[3]) - 1)
end
return 1

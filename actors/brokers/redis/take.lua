-- Acknowledge the entries the consumer finished, move due delayed messages to their ready
-- streams, then read up to `want` new entries, highest priority first. Atomic, so each delayed
-- message is moved exactly once, by whichever consumer gets there first, and an acknowledged
-- entry is deleted in the same step (XACK + XDEL, as the settler's MULTI does).
-- KEYS: delayed zset x nq, delayed messages stream x nq, ready streams x 10*nq
--       (priority 9 of every queue, then priority 8 ..., queues in the consumer's order)
-- ARGV: group, consumer, want, nq, promote limit, priority field,
--       then (ready stream index, entry id) pairs to acknowledge
-- Returns one msgpack blob (one bulk string is far cheaper for the client to parse than
-- nested replies): {ms until the next delayed message is due (-1: none),
--                   {{stream index, id, {field, value...}}...}}
local group, consumer = ARGV[1], ARGV[2]
local want, nq, limit, priority_field = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local ready = 2 * nq

local acks = {}
for i = 7, #ARGV, 2 do
  local key = KEYS[ready + tonumber(ARGV[i])]
  local ids = acks[key]
  if not ids then
    ids = {}
    acks[key] = ids
  end
  ids[#ids + 1] = ARGV[i + 1]
end
for key, ids in pairs(acks) do
  for first = 1, #ids, 500 do
    local last = math.min(first + 499, #ids)
    -- pcall: if the group or stream vanished (purge, Redis restarted), nothing is left to ack.
    redis.pcall('XACK', key, group, unpack(ids, first, last))
    redis.pcall('XDEL', key, unpack(ids, first, last))
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next_due = -1
for q = 1, nq do
  local zset, messages = KEYS[q], KEYS[nq + q]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)) do
    local entry = redis.call('XRANGE', messages, id, id)[1]
    if entry then
      local fields, out, priority = entry[2], {}, 0
      for i = 1, #fields, 2 do
        if fields[i] == priority_field then
          priority = math.max(0, math.min(9, tonumber(fields[i + 1]) or 0))
        else
          out[#out + 1] = fields[i]
          out[#out + 1] = fields[i + 1]
        end
      end
      redis.call('XADD', KEYS[ready + (9 - priority) * nq + q], '*', unpack(out))
      redis.call('XDEL', messages, id)
    end
    redis.call('ZREM', zset, id)
  end
  local head = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if head[2] then
    local wait = math.max(0, tonumber(head[2]) - now)
    if next_due < 0 or wait < next_due then next_due = wait end
  end
end
local taken = {}
for i = ready + 1, #KEYS do
  if want <= 0 then break end
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
                         'STREAMS', KEYS[i], '>')
  if got then
    for _, entry in ipairs(got[1][2]) do
      taken[#taken + 1] = {i - ready, entry[1], entry[2]}
      want = want - 1
    end
  end
end
return cmsgpack.pack({next_due, taken})

-- Take over entries that stayed unacknowledged longer than `min idle` (their consumer died or
-- lost Redis for that long), and dead-letter those delivered more than `max deliveries` times.
-- KEYS: ready streams x 10*nq (same order as take.lua), then dead-letter streams x nq
-- ARGV: group, consumer, min idle (ms), want, max deliveries, nq, priority field,
--       original-queue field, forget after (ms), queue names x nq, poison failure fields...
-- Consumers idle longer than `forget after` with nothing pending are removed from the group
-- (harmless even if alive: reading again recreates a consumer), so dead workers do not pile up.
-- Returns {{stream index, id, fields, delivery count}...}
local group, consumer, min_idle = ARGV[1], ARGV[2], ARGV[3]
local want, max_deliveries, nq = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local priority_field, queue_field, forget_after = ARGV[7], ARGV[8], tonumber(ARGV[9])
local failure = {}
for i = 10 + nq, #ARGV do failure[#failure + 1] = ARGV[i] end
local taken = {}

local function dead_letter(i, stream, id, fields)
  local q = (i - 1) % nq + 1
  local out = {}
  for j = 1, #fields do out[j] = fields[j] end
  local priority = 9 - math.floor((i - 1) / nq)
  for _, value in ipairs({priority_field, priority, queue_field, ARGV[9 + q]}) do
    out[#out + 1] = value
  end
  for _, value in ipairs(failure) do out[#out + 1] = value end
  redis.call('XADD', KEYS[10 * nq + q], '*', unpack(out))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end

local function claim(i)
  local stream, cursor = KEYS[i], '0-0'
  repeat
    local reply = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor,
                             'COUNT', want)
    cursor = reply[1]
    for _, entry in ipairs(reply[2]) do
      local id, fields = entry[1], entry[2]
      local count = redis.call('XPENDING', stream, group, id, id, 1)[1][4]
      if count > max_deliveries then
        dead_letter(i, stream, id, fields)
      else
        taken[#taken + 1] = {i, id, fields, count}
        want = want - 1
      end
    end
  until cursor == '0-0' or want <= 0
end

local function forget_dead_consumers(stream)
  for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local name, pending, idle
    for j = 1, #info, 2 do
      if info[j] == 'name' then name = info[j + 1] end
      if info[j] == 'pending' then pending = info[j + 1] end
      if info[j] == 'idle' then idle = info[j + 1] end
    end
    if pending == 0 and idle > forget_after and name ~= consumer then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
  end
end

for i = 1, 10 * nq do
  if want > 0 then claim(i) end
  forget_dead_consumers(KEYS[i])
end
return taken

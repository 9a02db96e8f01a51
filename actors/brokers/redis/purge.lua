-- Delete the ready (not yet delivered) entries of a queue and its delayed messages.
-- Entries in flight stay: their consumers still settle them.
-- KEYS: ready streams of priority 0..9, delayed zset, delayed messages stream; ARGV: group
-- Returns how many messages were deleted.
local deleted = 0
for i = 1, 10 do
  local stream, start = KEYS[i], '-'
  if redis.call('EXISTS', stream) == 1 then
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local name, last
      for j = 1, #info, 2 do
        if info[j] == 'name' then name = info[j + 1] end
        if info[j] == 'last-delivered-id' then last = info[j + 1] end
      end
      if name == ARGV[1] then start = '(' .. last end
    end
    while true do
      local entries = redis.call('XRANGE', stream, start, '+', 'COUNT', 1000)
      if #entries == 0 then break end
      local ids = {}
      for _, entry in ipairs(entries) do ids[#ids + 1] = entry[1] end
      redis.call('XDEL', stream, unpack(ids))
      deleted = deleted + #ids
      start = '(' .. ids[#ids]
    end
  end
end
deleted = deleted + redis.call('ZCARD', KEYS[11])
redis.call('DEL', KEYS[11], KEYS[12])
return deleted

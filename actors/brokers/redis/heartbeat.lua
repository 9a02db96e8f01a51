-- Reset the idle time of entries this consumer still owns, so that no other consumer claims
-- them while their actors run. Entries another consumer took over are left alone.
-- KEYS: a ready stream; ARGV: group, consumer, ids...
-- Returns the ids this consumer no longer owns.
local group, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer)[1] then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
return lost

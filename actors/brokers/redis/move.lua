-- Move an entry this consumer owns to another stream (dead-letter, requeue) with new fields,
-- and acknowledge and delete the original. Does nothing if another consumer took it over.
-- KEYS: source stream, target stream; ARGV: group, consumer, id, fields...
-- Returns 1 if moved, 0 if not owned.
local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
if not redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer)[1] then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[1], group, id)
redis.call('XDEL', KEYS[1], id)
return 1

-- Hold a message until `delay` ms from now (Redis's clock, so producers' clocks do not matter).
-- KEYS: delayed zset, delayed messages stream; ARGV: delay (ms), fields...
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('ZADD', KEYS[1], due, id)
return id

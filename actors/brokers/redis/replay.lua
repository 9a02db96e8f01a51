-- Move dead letters back to their ready streams (failure fields dropped), oldest first.
-- KEYS: dead-letter stream, ready streams of priority 0..9
-- ARGV: after id ('-' = from the start), entries to scan, most to move, actor ('' = any),
--       actor field, priority field, dropped fields...
-- Returns {moved, last scanned id, scanned}
local after, scan, most, actor = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local actor_field, priority_field = ARGV[5], ARGV[6]
local dropped = {}
for i = 7, #ARGV do dropped[ARGV[i]] = true end
local start = after == '-' and '-' or '(' .. after
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', scan)
local moved, last = 0, after
for _, entry in ipairs(entries) do
  if moved >= most then break end
  last = entry[1]
  local fields, out, priority, who = entry[2], {}, 0, nil
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == actor_field then who = fields[i + 1] end
    if name == priority_field then
      priority = math.max(0, math.min(9, tonumber(fields[i + 1]) or 0))
    elseif not dropped[name] then
      out[#out + 1] = name
      out[#out + 1] = fields[i + 1]
    end
  end
  if actor == '' or who == actor then
    redis.call('XADD', KEYS[2 + priority], '*', unpack(out))
    redis.call('XDEL', KEYS[1], entry[1])
    moved = moved + 1
  end
end
return {moved, last, #entries}

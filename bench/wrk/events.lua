-- POST /v1/events: batches of BATCH events (views and purchases) with unique ids, random customers/items.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "paced.lua")  -- pacing, seed, lines_of
local customers = lines_of("TAILOR_BENCH_IDS", "ids.txt")
local items = lines_of("TAILOR_BENCH_ITEMS", "items.txt")
local batch = tonumber(os.getenv("TAILOR_BENCH_BATCH") or "100")
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1e9))
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local events = {}
  for i = 1, batch do
    counter = counter + 1
    local kind = (counter % 5 == 0) and "purchase" or "view"
    events[i] = string.format(
      '{"event_id":"%s-%d","customer_id":"%s","item_id":"%s","type":"%s","timestamp":"2011-12-10T12:00:00Z"}',
      prefix, counter, customers[math.random(#customers)], items[math.random(#items)], kind)
  end
  return wrk.format(nil, "/v1/events", nil, '{"events": [' .. table.concat(events, ",") .. ']}')
end

-- POST /v1/events: batches of BATCH events (views and purchases) with unique ids, random customers/items.
local customers, items = {}, {}
for line in io.lines(os.getenv("TAILOR_BENCH_IDS") or "ids.txt") do customers[#customers + 1] = line end
for line in io.lines(os.getenv("TAILOR_BENCH_ITEMS") or "items.txt") do items[#items + 1] = line end
local batch = tonumber(os.getenv("TAILOR_BENCH_BATCH") or "100")
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
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

if pace_ms > 0 then
  -- exponential gaps (mean pace_ms): independent clients, not 16 connections firing in lock-step bursts
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

-- POST /v1/customers/{id}/rank: a random customer from ids.txt, RANK_SIZE (default 20) random items from items.txt.
local customers, items = {}, {}
for line in io.lines(os.getenv("TAILOR_BENCH_IDS") or "ids.txt") do customers[#customers + 1] = line end
for line in io.lines(os.getenv("TAILOR_BENCH_ITEMS") or "items.txt") do items[#items + 1] = line end
local size = tonumber(os.getenv("TAILOR_BENCH_RANK_SIZE") or "20")
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local chosen = {}
  for i = 1, size do chosen[i] = '"' .. items[math.random(#items)] .. '"' end
  local path = "/v1/customers/" .. customers[math.random(#customers)] .. "/rank"
  return wrk.format(nil, path, nil, '{"items": [' .. table.concat(chosen, ",") .. ']}')
end

if pace_ms > 0 then
  -- exponential gaps (mean pace_ms): independent clients, not 16 connections firing in lock-step bursts
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

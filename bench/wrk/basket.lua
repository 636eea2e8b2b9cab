-- POST /v1/recommendations with a basket of 1-5 items drawn at random from ids.txt.
local ids = {}
for line in io.lines(os.getenv("TAILOR_BENCH_IDS") or "ids.txt") do ids[#ids + 1] = line end
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local basket = {}
  for i = 1, math.random(5) do basket[i] = '"' .. ids[math.random(#ids)] .. '"' end
  return wrk.format(nil, "/v1/recommendations", nil, '{"n": 10, "items": [' .. table.concat(basket, ",") .. ']}')
end

if pace_ms > 0 then
  -- exponential gaps (mean pace_ms): independent clients, not 16 connections firing in lock-step bursts
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

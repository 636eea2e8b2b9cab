-- GET /v1/customers/{id}/recommendations for customers drawn at random from ids.txt (one id per line).
local ids = {}
for line in io.lines(os.getenv("TAILOR_BENCH_IDS") or "ids.txt") do ids[#ids + 1] = line end
local path_template = os.getenv("TAILOR_BENCH_PATH") or "/v1/customers/%s/recommendations?n=10"
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))

request = function()
  return wrk.format("GET", string.format(path_template, ids[math.random(#ids)]))
end

if pace_ms > 0 then
  -- exponential gaps (mean pace_ms): independent clients, not 16 connections firing in lock-step bursts
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

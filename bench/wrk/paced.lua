-- The URL given to wrk (e.g. /healthz), paced like the other scripts: exponential gaps of mean
-- TAILOR_BENCH_DELAY_MS per connection (without a script wrk would send back to back).
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))

if pace_ms > 0 then
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

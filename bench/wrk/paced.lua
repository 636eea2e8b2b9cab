-- Shared by every wrk script here (each loads it with dofile) and, alone, the script for plain GETs such as
-- /healthz: seeds the random numbers per wrk thread and, with TAILOR_BENCH_DELAY_MS set, paces each
-- connection with exponential gaps of that mean (independent clients, not connections firing in
-- lock-step bursts; without a script wrk would send back to back).
local pace_ms = tonumber(os.getenv("TAILOR_BENCH_DELAY_MS") or "0")
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))

if pace_ms > 0 then
  delay = function() return -pace_ms * math.log(1 - math.random()) end
end

-- The lines of the file named by environment variable `name` (else `default`): customer or item ids.
function lines_of(name, default)
  local out = {}
  for line in io.lines(os.getenv(name) or default) do out[#out + 1] = line end
  return out
end

-- GET /v1/customers/{id}/recommendations for customers drawn at random from ids.txt (one id per line).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "paced.lua")  -- pacing, seed, lines_of
local ids = lines_of("TAILOR_BENCH_IDS", "ids.txt")
local path_template = os.getenv("TAILOR_BENCH_PATH") or "/v1/customers/%s/recommendations?n=10"

request = function()
  return wrk.format("GET", string.format(path_template, ids[math.random(#ids)]))
end

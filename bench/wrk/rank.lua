-- POST /v1/customers/{id}/rank: a random customer from ids.txt, RANK_SIZE (default 20) random items from items.txt.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "paced.lua")  -- pacing, seed, lines_of
local customers = lines_of("TAILOR_BENCH_IDS", "ids.txt")
local items = lines_of("TAILOR_BENCH_ITEMS", "items.txt")
local size = tonumber(os.getenv("TAILOR_BENCH_RANK_SIZE") or "20")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local chosen = {}
  for i = 1, size do chosen[i] = '"' .. items[math.random(#items)] .. '"' end
  local path = "/v1/customers/" .. customers[math.random(#customers)] .. "/rank"
  return wrk.format(nil, path, nil, '{"items": [' .. table.concat(chosen, ",") .. ']}')
end

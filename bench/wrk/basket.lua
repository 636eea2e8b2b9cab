-- POST /v1/recommendations with a basket of 1-5 items drawn at random from ids.txt.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "paced.lua")  -- pacing, seed, lines_of
local ids = lines_of("TAILOR_BENCH_IDS", "ids.txt")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local basket = {}
  for i = 1, math.random(5) do basket[i] = '"' .. ids[math.random(#ids)] .. '"' end
  return wrk.format(nil, "/v1/recommendations", nil, '{"n": 10, "items": [' .. table.concat(basket, ",") .. ']}')
end

-- POST /api/usage: one model request recorded and debited per request, a new request_id each.
-- Expected answer: 201 (bench/usage_api.py WORKLOADS).
dofile("lib.lua")

local before = '{"request_id":"'
local after = '","provider":"anthropic","model":"claude-sonnet-4-5",' ..
  '"input_tokens":1200,"output_tokens":350,"cache_read_tokens":0}'

function request()
  return bench.post("/api/usage", before .. bench.id() .. after)
end

function response(status, headers, body)
  bench.count("usage", status)
end

-- A streaming request as the gateway makes it: POST /api/holds for the maximum tokens, then
-- POST /api/holds/<id>/settle with what was used (the same tokens as usage.lua), a new
-- request_id each. Expected answers: hold 201, settle 201 (bench/usage_api.py WORKLOADS).
-- A connection sends the settle of a hold answered earlier in its thread when there is one,
-- otherwise a new hold; holds answered but not settled when wrk stops expire on their own.
dofile("lib.lua")

local hold_before = '{"request_id":"'
local hold_after = '","provider":"anthropic","model":"claude-sonnet-4-5",' ..
  '"max_input_tokens":1200,"max_output_tokens":4000,"ttl_seconds":600}'
local settle_body = '{"input_tokens":1200,"output_tokens":350,"cache_read_tokens":0}'

local to_settle = {}

function request()
  local hold_id = table.remove(to_settle)
  if hold_id then
    return bench.post("/api/holds/" .. hold_id .. "/settle", settle_body)
  end
  return bench.post("/api/holds", hold_before .. bench.id() .. hold_after)
end

function response(status, headers, body)
  local hold_id = body:match('"hold_id":%s*(%d+)')
  if hold_id then
    table.insert(to_settle, hold_id)
    bench.count("hold", status)
  elseif body:find('"released_microdollars"', 1, true) then
    bench.count("settle", status)
  else
    bench.count("other", status)
  end
end

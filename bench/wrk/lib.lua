-- What every workload of bench/usage_api.py shares (wrk 4, LuaJIT). A workload script starts
-- with `dofile("lib.lua")` (wrk runs in this folder), then defines request() and response()
-- with the helpers below.
--
-- wrk arguments after `--`: <prefix> <token> <organization id>
--   prefix: unique per run slice; every request_id is <prefix>-<thread>-<n>, so none repeats.
--
-- At the end one line on stdout, `BENCH {json}`: the answers counted per step and status
-- ("usage 201": n), requests sent and answered (the difference is what was in flight when wrk
-- stopped: the server may have completed it), socket errors, the run's length, and latency
-- percentiles 0.1 … 100 by steps of 0.1 (in microseconds) so that slices can be combined.

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

bench = {}

function init(args)
  prefix = args[1] .. "-" .. thread_no .. "-"
  headers = {
    ["Authorization"] = "Bearer " .. args[2],
    ["X-KiloCode-OrganizationId"] = args[3],
    -- What the TLS-terminating proxy in front of production adds.
    ["X-Forwarded-Proto"] = "https",
    ["Content-Type"] = "application/json",
  }
  counts, sent, answered, serial = {}, 0, 0, 0
end

-- A new request_id, never used before in this run.
function bench.id()
  serial = serial + 1
  return prefix .. serial
end

function bench.post(path, body)
  sent = sent + 1
  return wrk.format("POST", path, headers, body)
end

-- Count one answer of a step ("usage", "hold", "settle") with its status.
function bench.count(step, status)
  answered = answered + 1
  local key = step .. " " .. status
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local totals, total_sent, total_answered = {}, 0, 0
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do
      totals[key] = (totals[key] or 0) + n
    end
    total_sent = total_sent + thread:get("sent")
    total_answered = total_answered + thread:get("answered")
  end
  local statuses = {}
  for key, n in pairs(totals) do
    statuses[#statuses + 1] = string.format('"%s": %d', key, n)
  end
  local grid = {}
  if summary.requests > 0 then
    for i = 1, 1000 do
      grid[i] = string.format("%d", latency:percentile(i / 10))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"duration_us": %d, "responses": %d, "sent": %d, "answered": %d, ' ..
    '"statuses": {%s}, "socket_errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}, "latency_grid_us": [%s]}\n',
    summary.duration, summary.requests, total_sent, total_answered,
    table.concat(statuses, ", "), e.connect, e.read, e.write, e.timeout,
    table.concat(grid, ", ")))
end

-- wrk script for the webhook benchmark: POST /webhook with a signed workflow_run delivery.
--
-- wrk -t N -s bench/webhook.lua URL -- TEMPLATE RUNS PREFIX PATH N
--   TEMPLATE  the payload as compact JSON, "@RUN@" where the run id goes
--   RUNS      lines "<run id> <X-Hub-Signature-256>"; thread t of n takes lines t, t+n, ...
--             and uses each once, then starts again (a second use finds the leases queued)
--   PREFIX    makes every X-GitHub-Delivery unique, so dedupe never short-circuits
--   PATH      the request path (/webhook)
--   N         wrk's thread count again (a thread's init cannot know it otherwise)
-- At the end it prints one line of JSON: requests, duration, errors and latency percentiles.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function split(text, separator)
  local parts, start = {}, 1
  while true do
    local first, last = string.find(text, separator, start, true)
    if not first then
      table.insert(parts, string.sub(text, start))
      return parts
    end
    table.insert(parts, string.sub(text, start, first - 1))
    start = last + 1
  end
end

local parts, runs, signatures = nil, {}, {}
local counter, prefix, path = 0, "", "/webhook"

function init(args)
  local template = io.open(args[1], "rb"):read("*a")
  parts = split(template, "@RUN@")
  local index, nthreads = 0, tonumber(args[5] or "1")
  for line in io.lines(args[2]) do
    if index % nthreads == tid then
      local run, signature = line:match("^(%d+) (%S+)$")
      table.insert(runs, run)
      table.insert(signatures, signature)
    end
    index = index + 1
  end
  prefix = args[3] .. "-" .. tid
  path = args[4]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "workflow_run"
  wrk.headers["User-Agent"] = "GitHub-Hookshot/c8f7262"
  wrk.headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
end

function request()
  local i = counter % #runs + 1
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  wrk.headers["X-Hub-Signature-256"] = signatures[i]
  wrk.headers["X-Bench-Run"] = runs[i] -- read by the write-making baseline only
  return wrk.format("POST", path, nil, table.concat(parts, runs[i]))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end

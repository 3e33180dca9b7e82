-- wrk script for the benchmarks (benchmarks/common.py runs it; see loadgen.py for the
-- Python equivalent used when wrk is not installed).
--   BENCH_METHOD  GET or POST (default POST)
--   BENCH_BODY    JSON body; "{n}" becomes a number unique to the request, "{tag}" BENCH_TAG
--   BENCH_HEADER  one extra "Name: value" header ("{n}" works there too)
-- done() prints one JSON line: requests, statuses, latency percentiles in ms.

local method = os.getenv("BENCH_METHOD") or "POST"
local body_template = os.getenv("BENCH_BODY")
local tag = os.getenv("BENCH_TAG") or "t"
local header = os.getenv("BENCH_HEADER")
local header_name, header_value
if header and header ~= "" then
  header_name, header_value = header:match("^([^:]+):%s*(.*)$")
end
local unique = (body_template and body_template:find("{n}", 1, true))
  or (header_value and header_value:find("{n}", 1, true))

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local function fill(text, n)
  if text == nil then return nil end
  text = text:gsub("{n}", n):gsub("{tag}", tag)
  return text
end

local counter = 0
local fixed = nil
statuses = {}

function init(args)
  wrk.method = method
  if body_template then
    wrk.headers["Content-Type"] = "application/json"
  end
  if header_name then
    wrk.headers[header_name] = fill(header_value, "0")
  end
  if not unique then
    fixed = wrk.format(method, nil, nil, fill(body_template, "0"))
  end
end

function request()
  if fixed then return fixed end
  counter = counter + 1
  local n = tostring(tid) .. "x" .. tostring(counter)
  -- wrk.format uses the given table instead of wrk.headers: start from a copy.
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  if header_name then headers[header_name] = fill(header_value, n) end
  return wrk.format(method, nil, headers, fill(body_template, n))
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for code, count in pairs(counts) do
      total[code] = (total[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(total) do
    table.insert(parts, string.format('"%s": %d', code, count))
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "elapsed": %f, "rate": %f, "statuses": {%s}, "errors": %d, '
      .. '"latency_ms": {"p50": %f, "p90": %f, "p99": %f, "max": %f}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    table.concat(parts, ", "), errors,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end

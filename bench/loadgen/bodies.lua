-- wrk script: POST a random line of a bodies file (one JSON request body per line, or
-- "<path><TAB><body>" to post to another path than the URL's) with the given
-- Authorization header, and print the run's figures as one JSON line at the end.
--   wrk -t1 -c16 -d10s -s bench/loadgen/bodies.lua URL -- BODIES_FILE [AUTHORIZATION]
local bodies = {}
local auth = nil

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      local tab = line:find("\t", 1, true)
      if line:sub(1, 1) == "/" and tab then
        bodies[#bodies + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
      else
        bodies[#bodies + 1] = { nil, line }
      end
    end
  end
  auth = args[2]
  math.randomseed(os.time())
end

function request()
  local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  if auth and #auth > 0 then headers["Authorization"] = auth end
  local pick = bodies[math.random(#bodies)]
  return wrk.format("POST", pick[1], headers, pick[2])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end

-- Last part of every bench script for wrk. response() counts every status (so any non-2xx,
-- 1xx/3xx included, is caught) and the 2xx answers that carry an ETag; done() prints one
-- JSON line (BENCH_JSON ...) that bench/wrk_runs.py reads.
-- Each wrk thread loads the whole script into its own Lua state, so these are per thread.
statuses = {}
non2xx = 0
etags = 0

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif headers["etag"] or headers["ETag"] then
    etags = etags + 1
  end
end

function done(summary, latency, requests)
  local non = 0
  local tags = 0
  local merged = {}
  for _, t in ipairs(threads) do
    non = non + t:get("non2xx")
    tags = tags + t:get("etags")
    local s = t:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, ' ..
    '"with_etag": %d, ' ..
    '"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "lat_us": {"p50": %d, "p90": %d, "p99": %d, ' ..
    '"p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, non, tags, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end

-- Shared by the wrk scripts of bench/run_serve.sh: at the end of a run, one line
--   WRK {"requests":N,"duration_us":D,"bytes":B,"connect":..,"read":..,"write":..,"status":..,
--        "timeout":..,"p50_us":..,"p90_us":..,"p99_us":..,"p999_us":..,"mean_us":..,"max_us":..}
-- on stdout. "status" counts the responses that were not 2xx or 3xx (wrk's own count, the
-- "Non-2xx or 3xx responses" line); the others are wrk's socket errors. Latencies in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max))
end

-- The whole of a file, bytes as they are.
function read_file(path)
   local f = assert(io.open(path, "rb"))
   local s = f:read("*a")
   f:close()
   return s
end

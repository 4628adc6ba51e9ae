-- report.lua: what every bench script shares (loaded with dofile from the script's directory).
--
-- setup() numbers the threads so that scripts can split their input between them, and done()
-- prints the run's figures as one machine-readable line for bench/run:
--   BENCH requests=N duration_us=N p50_us=N p90_us=N p99_us=N max_us=N status_errors=N
--         connect_errors=N read_errors=N write_errors=N timeouts=N
-- status_errors counts responses with a status of 400 or more (wrk's count); bench/run fails the
-- run on any error. Latencies are wrk's, in microseconds, per request on a keep-alive connection.

local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f " ..
      "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout))
end

-- report.lua: what every bench script shares (loaded with dofile from the script's directory).
--
-- setup() numbers the threads so that scripts can split their input between them, and done()
-- prints the run's figures as one machine-readable line for bench/run:
--   BENCH requests=N duration_us=N p50_us=N p90_us=N p99_us=N max_us=N status_errors=N
--         connect_errors=N read_errors=N write_errors=N timeouts=N head_start_us=N
-- status_errors counts responses with a status of 400 or more (wrk's count); bench/run fails the
-- run on any error. Latencies are wrk's, in microseconds, per request on a keep-alive connection.
--
-- duration_us is corrected for wrk's staggered start: wrk runs init() of thread i+1 only after
-- thread i has started sending, and starts its clock after the last thread has started, so with a
-- slow init() (bodies.lua loads 100k requests) thread 0 sends for longer than the duration wrk
-- reports and requests/duration comes out too high (by ~9% for a 2 s run). Scripts that call
-- bench_mark_first() on their first request let done() add the threads' mean head start
-- (head_start_us) to the duration.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")

-- Microseconds on CLOCK_MONOTONIC (1), shared by all threads.
function bench_now_us()
   ffi.C.clock_gettime(1, ts)
   return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

-- Called by a script's request() on its first request: records when this thread began.
first_us = nil
function bench_mark_first()
   if not first_us then
      first_us = bench_now_us()
   end
end

local next_tid = 0
local threads = {}

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   threads[#threads + 1] = thread
end

function done(summary, latency, requests)
   -- The mean head start of the threads over the last one to begin (0 for static scripts).
   local firsts, last = {}, nil
   for _, t in ipairs(threads) do
      local f = t:get("first_us")
      if f then
         firsts[#firsts + 1] = f
         if not last or f > last then
            last = f
         end
      end
   end
   local head_start = 0
   if #firsts == #threads and #firsts > 0 then
      for _, f in ipairs(firsts) do
         head_start = head_start + (last - f)
      end
      head_start = head_start / #firsts
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f " ..
      "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d " ..
      "head_start_us=%.0f\n",
      summary.requests, summary.duration + head_start,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout, head_start))
end

-- bodies.lua: POSTs one body per line of a file, each line used once before any repeats.
--   BENCH_LINES     file with one item per line (a JSON-escaped CSR PEM, a JWT)
--   BENCH_BODY_FMT  string.format pattern with one %s for the line, e.g. {"csr":"%s"}
--   BENCH_THREADS   wrk's -t (the number of threads sharing the file)
--   BENCH_OFFSET    lines already used by earlier runs (default 0)
-- Thread t of T takes the lines t, t+T, t+2T, ... so no two threads send the same body, and
-- starts after the lines earlier runs used, so repeats come only after the whole file has gone
-- by (bench/run sizes the CSR file for that). The requests are built up front so that request()
-- costs the load generator next to nothing.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = "POST"
local reqs = {}
local n = 0
local i = 0

function init(args)
   local file = assert(os.getenv("BENCH_LINES"), "BENCH_LINES is not set")
   local fmt = assert(os.getenv("BENCH_BODY_FMT"), "BENCH_BODY_FMT is not set")
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
   local k = 0
   for line in io.lines(file) do
      if k % nthreads == tid and line ~= "" then
         n = n + 1
         reqs[n] = wrk.format(nil, nil, nil, string.format(fmt, line))
      end
      k = k + 1
   end
   assert(n > 0, "no lines for thread " .. tid .. " in " .. file)
   i = math.floor(offset / nthreads) % n
end

function request()
   i = i + 1
   if i > n then
      i = 1
   end
   return reqs[i]
end

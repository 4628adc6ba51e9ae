-- bodies.lua: POSTs one body per line of a file, each line used once before any repeats.
--   BENCH_LINES      file with one item per line (a JSON-escaped CSR PEM, a JWT)
--   BENCH_BODY_FMT   the body with one %s where the line goes, e.g. {"csr":"%s"}
--   BENCH_THREADS    wrk's -t (the number of threads sharing the file)
--   BENCH_OFFSET     lines already used by earlier runs (default 0)
--   BENCH_MAX_LINES  read at most this many lines of the file (default all)
-- Thread t of T takes the lines t, t+T, t+2T, ... so no two threads send the same body, and
-- starts after the lines earlier runs used, so repeats come only after the whole file has gone
-- by (bench/run sizes the CSR file for that). The requests are built up front so that request()
-- costs the load generator next to nothing, and built by plain concatenation (not wrk.format,
-- which formats every header again) so that 100k of them take well under a second. The first
-- request() marks when this thread began (report.lua corrects wrk's duration with it).
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
   local max_lines = tonumber(os.getenv("BENCH_MAX_LINES") or "0")
   local at = assert(string.find(fmt, "%s", 1, true), "BENCH_BODY_FMT has no %s")
   local pre, post = string.sub(fmt, 1, at - 1), string.sub(fmt, at + 2)

   -- The request line and headers, as wrk.format would write them, up to Content-Length.
   local head = { wrk.method .. " " .. wrk.path .. " HTTP/1.1" }
   if not wrk.headers["Host"] then
      head[#head + 1] = "Host: " .. wrk.host
   end
   for name, value in pairs(wrk.headers) do
      if name ~= "Content-Length" then
         head[#head + 1] = name .. ": " .. value
      end
   end
   local prefix = table.concat(head, "\r\n") .. "\r\nContent-Length: "

   local k = 0
   for line in io.lines(file) do
      if max_lines > 0 and k >= max_lines then
         break
      end
      if k % nthreads == tid and line ~= "" then
         local body = pre .. line .. post
         n = n + 1
         reqs[n] = prefix .. #body .. "\r\n\r\n" .. body
      end
      k = k + 1
   end
   assert(n > 0, "no lines for thread " .. tid .. " in " .. file)
   i = math.floor(offset / nthreads) % n
end

function request()
   bench_mark_first()
   i = i + 1
   if i > n then
      i = 1
   end
   return reqs[i]
end

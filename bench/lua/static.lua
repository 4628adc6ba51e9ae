-- static.lua: the same request over and over (wrk builds it once). Headers come from wrk -H.
--   BENCH_METHOD     GET (default) or POST
--   BENCH_BODY_FILE  file whose content is the body (optional)
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
   local f = assert(io.open(body_file, "rb"))
   wrk.body = f:read("*a")
   f:close()
end

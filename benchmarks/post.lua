-- wrk script for benchmarks/run.py: POST one fixed body, read from a file, on every request.
--
--   BENCH_BODY=body.json BENCH_CONTENT_TYPE=application/json \
--     wrk -t1 -c32 -d5s --latency -s benchmarks/post.lua http://127.0.0.1:8501/v2/models/mnist/infer
--
-- Environment:
--   BENCH_BODY            path of the request body (sent byte for byte)
--   BENCH_CONTENT_TYPE    Content-Type header (default application/json)
--   BENCH_HEADER_LENGTH   if set, sent as Inference-Header-Content-Length (KServe V2 binary
--                         tensor extension: the length of the JSON header that starts the body)

local path = assert(os.getenv("BENCH_BODY"), "set BENCH_BODY to the request body's path")
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"

local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length ~= nil and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
end

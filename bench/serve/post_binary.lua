-- wrk -s bench/serve/post_binary.lua URL -- BODY.bin HEADER_LENGTH
-- POSTs a request in Triton's binary tensor extension on every call (bench/run_serve.sh): BODY.bin
-- holds the JSON header and then the raw tensor bytes; HEADER_LENGTH is the JSON header's length,
-- sent as Inference-Header-Content-Length.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")

function init(args)
   assert(args[1] and tonumber(args[2]), "post_binary.lua: give the body file and header length")
   wrk.method = "POST"
   wrk.body = read_file(args[1])
   wrk.headers["Content-Type"] = "application/octet-stream"
   wrk.headers["Inference-Header-Content-Length"] = args[2]
end

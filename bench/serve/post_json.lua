-- wrk -s bench/serve/post_json.lua URL -- BODY.json
-- POSTs the JSON inference request in BODY.json on every call (bench/run_serve.sh).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")

function init(args)
   assert(args[1], "post_json.lua: give the body file after --")
   wrk.method = "POST"
   wrk.body = read_file(args[1])
   wrk.headers["Content-Type"] = "application/json"
end

-- wrk -s bench/serve/get.lua URL
-- GETs URL on every call (bench/run_serve.sh: kiln's /v2/health/live, its HTTP path without the
-- model, and nginx's static file); only adds the WRK summary line.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")

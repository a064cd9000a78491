-- wrk script for `make bench` (bench/load.py): POSTs one JSON body, the path given to
-- wrk as its first argument after `--`, on every request, and prints the run's figures
-- as one JSON object.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  -- A body saved as *.arrows is an Arrow IPC stream (POST /predict/batch's columnar form),
  -- sent by a columnar client that asks for its answer in Arrow too.
  if string.match(args[1], "%.arrows$") then
    wrk.headers["Content-Type"] = "application/vnd.apache.arrow.stream"
    wrk.headers["Accept"] = "application/vnd.apache.arrow.stream"
  end
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,'
      .. '"non_2xx":%d,"socket_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, errors.status, errors.connect + errors.read + errors.write, errors.timeout))
end

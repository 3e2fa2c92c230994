-- wrk script: an OIP v2 infer request for the echo (mock) model; prints one BENCHRESULT line.
wrk.method = "POST"
wrk.path   = os.getenv("BENCH_PATH") or "/v2/models/echo/infer"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY") or ('{"id":"bench-1","inputs":[{"name":"input-0","shape":[1,16],' ..
  '"datatype":"FP32","data":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6]}]}')

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCHRESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end

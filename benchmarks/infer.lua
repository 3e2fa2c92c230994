-- wrk script for the model benchmarks (loadgen.py): POST $BENCH_BODY to $BENCH_PATH; prints one
-- BENCHRESULT line with the latency percentiles, transport errors and non-2xx answers apart.
wrk.method = "POST"
wrk.path   = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
if os.getenv("BENCH_API_KEY") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHRESULT requests=%d duration_s=%.3f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end

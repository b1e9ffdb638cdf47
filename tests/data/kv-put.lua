-- wrk script of the KV benchmark (tests/src/bin/keel-kv-bench.rs): etcd v2
-- PUTs of a ~100-byte value to /v2/keys/bench/k<N>, N cycling over 1000 keys.
--
-- Each wrk thread has its own Lua state: request() and response() count in
-- thread globals; done() runs in the main state and adds up the threads it
-- kept in setup(). It prints one line the harness parses:
--   kv-bench: rps=R p50_ms=P p99_ms=Q non2xx=E socket_errors=S requests=N
-- where R counts only the 2xx answers: a server that fails fast must not
-- look fast. The harness reports E and S and gives no verdict when either
-- is not zero.

local KEYS = 1000
local BODY = "value=" .. string.rep("v", 100)
local HEADERS = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local threads = {}

function setup(thread)
  -- Threads start at different keys so that they do not write the same key
  -- in lockstep.
  thread:set("first", #threads * 500)
  table.insert(threads, thread)
end

function init(args)
  n = first
  non2xx = 0
end

function request()
  local path = "/v2/keys/bench/k" .. (n % KEYS)
  n = n + 1
  return wrk.format("PUT", path, HEADERS, BODY)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non2xx")
  end
  local e = summary.errors
  -- summary.duration and the latency percentiles are in microseconds.
  io.write(string.format(
    "kv-bench: rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d requests=%d\n",
    (summary.requests - bad) / (summary.duration / 1e6),
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    bad,
    e.connect + e.read + e.write + e.timeout,
    summary.requests))
end

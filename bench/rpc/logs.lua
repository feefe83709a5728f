-- wrk: eth_getLogs of one random block 1..MAX_BLOCK, filtered by ADDRESS (BENCHMARKS.md §9).
local max = tonumber(os.getenv("MAX_BLOCK") or "2000")
local address = os.getenv("ADDRESS") or "0x0000000000000000000000000000000000000000"
math.randomseed(os.time())
request = function()
  local n = math.random(1, max)
  local body = string.format(
    '{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x%x","toBlock":"0x%x","address":"%s"}]}',
    n, n, address)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

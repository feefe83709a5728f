-- wrk: eth_getBlockByNumber(n, true) at random heights 1..MAX_BLOCK (BENCHMARKS.md §9).
local max = tonumber(os.getenv("MAX_BLOCK") or "2000")
math.randomseed(os.time())
request = function()
  local body = string.format('{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x%x",true]}',
    math.random(1, max))
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

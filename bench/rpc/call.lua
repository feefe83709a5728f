-- wrk: eth_call to the identity precompile at `latest` (BENCHMARKS.md §9, forwarded calls).
request = function()
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
    '{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000004","data":"0x1234"},"latest"]}')
end

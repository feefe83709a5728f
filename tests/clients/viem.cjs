// The same viem calls against a node and against blockstreamer's /rpc: every answer must be
// equal (viem parses both, so this is what a viem user sees), over HTTP and a WebSocket. Args: NODE_URL OURS_URL TX_HASH
// LOG_ADDRESS ACCOUNT. Prints "ok <calls>" or the first difference, and exits non-zero on one.
const { createPublicClient, http, webSocket } = require('viem');

const [nodeUrl, oursUrl, txHash, logAddress, account] = process.argv.slice(2);
const node = createPublicClient({ transport: http(nodeUrl) });
const ours = createPublicClient({ transport: http(oursUrl) });
// The same endpoint over a WebSocket.
const oursWs = createPublicClient({ transport: webSocket(oursUrl.replace('http://', 'ws://')) });

// Field order aside (the test bed's fault proxies re-serialise what they forward): keys sorted.
const sorted = (x) =>
  x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sorted(x[k])]))
    : Array.isArray(x)
      ? x.map(sorted)
      : x;
const show = (v) => JSON.stringify(sorted(v), (_, x) => (typeof x === 'bigint' ? `${x}n` : x));

async function main() {
  const head = await node.getBlockNumber();
  const calls = [
    ['getChainId', (c) => c.getChainId()],
    ['getBlockNumber', (c) => c.getBlockNumber()],
    ['getBlock latest', (c) => c.getBlock()],
    ['getBlock full', (c) => c.getBlock({ blockNumber: head - 2n, includeTransactions: true })],
    ['getTransaction', (c) => c.getTransaction({ hash: txHash })],
    ['getTransactionReceipt', (c) => c.getTransactionReceipt({ hash: txHash })],
    ['getLogs', (c) => c.getLogs({ address: logAddress, fromBlock: 0n, toBlock: head })],
    ['getBalance past', (c) => c.getBalance({ address: account, blockNumber: 2n })],
    ['getTransactionCount', (c) => c.getTransactionCount({ address: account })],
    ['call', (c) => c.call({ to: logAddress, data: '0x' })],
  ];
  for (let n = 0n; n <= head; n++) {
    calls.push([`getBlock ${n}`, (c) => c.getBlock({ blockNumber: n, includeTransactions: true })]);
  }
  for (const [name, f] of calls) {
    const [a, b] = [show(await f(node)), show(await f(ours))];
    if (a !== b) {
      console.log(`${name} differs:\nnode: ${a}\nours: ${b}`);
      process.exit(1);
    }
  }
  for (const [name, f] of calls.slice(0, 8)) {
    const [a, b] = [show(await f(node)), show(await f(oursWs))];
    if (a !== b) {
      console.log(`${name} over WebSocket differs:\nnode: ${a}\nours: ${b}`);
      process.exit(1);
    }
  }
  await (await oursWs.transport.getRpcClient()).close();
  console.log(`ok ${calls.length + 8}`);
}

main().catch((e) => {
  console.log(`error: ${e}`);
  process.exit(2);
});

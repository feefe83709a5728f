"""The same web3.py calls against a node and against blockstreamer's /rpc: every answer must be
equal (web3.py parses both, so this is what a web3.py user sees), over HTTP and over a
WebSocket, where a newHeads subscription must name the node's new block.

Args: NODE_URL OURS_URL TX_HASH LOG_ADDRESS ACCOUNT. Prints "ok <calls>" or the first
difference, and exits non-zero on one.
"""

import asyncio
import json
import sys

from web3 import AsyncWeb3, Web3
from web3.providers.persistent import WebSocketProvider

node_url, ours_url, tx_hash, log_address, account = sys.argv[1:6]
node = Web3(Web3.HTTPProvider(node_url))
ours = Web3(Web3.HTTPProvider(ours_url))
log_address = Web3.to_checksum_address(log_address)
account = Web3.to_checksum_address(account)


def show(v):
    """Field order aside (the test bed's proxies re-serialise what they forward): keys sorted."""
    return json.dumps(json.loads(Web3.to_json(v)), sort_keys=True)


def same(name, a, b):
    if show(a) != show(b):
        print(f"{name} differs:\nnode: {show(a)}\nours: {show(b)}")
        sys.exit(1)


def main():
    head = node.eth.block_number
    calls = [
        ("chain_id", lambda w: w.eth.chain_id),
        ("block_number", lambda w: w.eth.block_number),
        ("get_block latest", lambda w: w.eth.get_block("latest")),
        ("get_block full", lambda w: w.eth.get_block(head - 2, full_transactions=True)),
        ("get_transaction", lambda w: w.eth.get_transaction(tx_hash)),
        ("get_transaction_receipt", lambda w: w.eth.get_transaction_receipt(tx_hash)),
        ("get_block_receipts", lambda w: w.eth.get_block_receipts(head)),
        ("get_logs", lambda w: w.eth.get_logs({"address": log_address, "fromBlock": 0, "toBlock": head})),
        ("get_balance past", lambda w: w.eth.get_balance(account, 2)),
        ("get_transaction_count", lambda w: w.eth.get_transaction_count(account)),
        ("call", lambda w: w.eth.call({"to": log_address, "data": "0x"})),
    ]
    for n in range(head + 1):
        calls.append((f"get_block {n}", lambda w, n=n: w.eth.get_block(n, full_transactions=True)))
    for name, f in calls:
        same(name, f(node), f(ours))

    def batch(w):
        with w.batch_requests() as b:
            for i in range(50):
                if i % 5 == 0:
                    b.add(w.eth.get_balance(account, "latest"))
                else:
                    b.add(w.eth.get_block(i % (head + 1)))
            return b.execute()

    same("batch of 50", batch(node), batch(ours))
    asyncio.run(over_websocket(head))
    print(f"ok {len(calls) + 1 + 3}")


async def over_websocket(head):
    ws_url = ours_url.replace("http://", "ws://", 1)
    async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
        same("ws block_number", node.eth.block_number, await w3.eth.block_number)
        same("ws get_block", node.eth.get_block(head, full_transactions=True), await w3.eth.get_block(head, True))
        await w3.eth.subscribe("newHeads")
        node.provider.make_request("evm_mine", [])
        mined = node.eth.get_block("latest")

        async def up_to_mined():
            async for msg in w3.socket.process_subscriptions():
                h = msg["result"]
                b = node.eth.get_block(h["number"])
                for k in ("hash", "parentHash", "stateRoot", "number", "timestamp", "logsBloom"):
                    same(f"newHeads {h['number']} {k}", b[k], h[k])
                if h["number"] == mined["number"]:
                    return

        await asyncio.wait_for(up_to_mined(), timeout=20)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        print(f"error: {type(e).__name__}: {e}")
        sys.exit(2)

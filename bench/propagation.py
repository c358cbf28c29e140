"""Edit propagation between two clients on the same instance and on different
instances (issue 4), measured while ``loadgen.mjs`` keeps the cluster busy.

    python bench/propagation.py --same http://A --cross http://A,http://B --token T \\
        [--rate 5] [--seconds 30]

Two probe rooms: in one, the sender and the receiver are both on instance A; in the
other, the sender is on A and the receiver on B. Each sender makes ``--rate`` edits per
second (one ``meta`` key each); the receiver notes when each key shows up in its own
document. Prints p50/p90/p99/max per pair as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from typing import Any

import pycrdt
import socketio


def create_project(url: str, tok: str, name: str) -> str:
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/projects",
        data=json.dumps({"name": name}).encode(),
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["id"])


class Probe:
    def __init__(self, url: str, pid: str, tok: str) -> None:
        self.url = url
        self.ns = f"/yjs|{pid}"
        self.tok = tok
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.meta = self.doc.get("meta", type=pycrdt.Map)
        self.updates: list[bytes] = []
        self.seen: dict[str, float] = {}
        self.doc.observe(lambda e: self.updates.append(e.update))
        self.meta.observe(self._on_meta)
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("sync-step-1", self._step1, namespace=self.ns)
        self.sio.on("sync-update", self._update, namespace=self.ns)

    def _on_meta(self, event: Any) -> None:
        now = time.perf_counter()
        for key in event.keys:
            self.seen.setdefault(key, now)

    async def _step1(self, sv: bytes) -> bytes:
        return bytes(self.doc.get_update(sv))

    async def _update(self, update: bytes) -> None:
        self.doc.apply_update(update)

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, namespaces=[self.ns], auth={"token": self.tok}, transports=["websocket"]
        )

    async def edit(self, key: str) -> float:
        self.meta[key] = 1
        sent = time.perf_counter()
        await self.sio.emit("sync-update", self.updates[-1], namespace=self.ns)
        return sent


def summary(latencies: list[float]) -> dict[str, float]:
    xs = sorted(latencies)

    def q(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)

    return {"n": len(xs), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": q(1.0)}


async def pair(
    sender_url: str, receiver_url: str, tok: str, rate: float, seconds: float
) -> dict[str, float]:
    pid = create_project(sender_url, tok, f"probe {time.time()}")
    sender, receiver = Probe(sender_url, pid, tok), Probe(receiver_url, pid, tok)
    await sender.connect()
    await receiver.connect()
    await asyncio.sleep(1.0)  # both synced
    sent: dict[str, float] = {}
    stop = time.monotonic() + seconds
    i = 0
    while time.monotonic() < stop:
        key = f"k{i}"
        sent[key] = await sender.edit(key)
        i += 1
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(3.0)  # stragglers
    await sender.sio.disconnect()
    await receiver.sio.disconnect()
    latencies = [(receiver.seen[k] - t) * 1000 for k, t in sent.items() if k in receiver.seen]
    lost = len(sent) - len(latencies)
    return {**summary(latencies), "lost": lost}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--same", required=True, help="URL of instance A")
    parser.add_argument("--cross", required=True, help="URL of A,URL of B")
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    a, b = args.cross.split(",")
    same, cross = await asyncio.gather(
        pair(args.same, args.same, args.token, args.rate, args.seconds),
        pair(a, b, args.token, args.rate, args.seconds),
    )
    print(json.dumps({"same_instance": same, "cross_instance": cross}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

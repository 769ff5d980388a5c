"""Local server latency and fan-out, measured with raw HTTP and websocket clients.

- submit -> RUNNING and submit -> COMPLETED for a trivial program (``echo``) on a warm pool,
  as the server records them (its ``created``/``running``/``finished`` timestamps) and as a
  client polling ``GET /jobs/{id}`` sees them;
- sustained submissions per second (``POST /jobs`` one after another);
- many websocket subscribers on one server: N sequenced streams open at once on N jobs,
  each job publishing 10 interim results; all delivered, wall time.

Run: ``.venv/bin/python bench/bench_server.py [--quick]``; it prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime

import requests
import websocket

from runtime_job.server import LocalRuntimeServer

TOKEN = "bench-server-token-0123456789"


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _submit(session: requests.Session, base: str, program: str, params: dict[str, object]) -> str:
    response = session.post(
        f"{base}/jobs", data=json.dumps({"program_id": program, "params": params}), timeout=30
    )
    response.raise_for_status()
    return str(response.json()["id"])


def latency(session: requests.Session, base: str, count: int) -> dict[str, float]:
    """p50 of submit->RUNNING and submit->COMPLETED, server-side and client-observed."""
    to_running, to_done, observed = [], [], []
    for i in range(count):
        started = time.perf_counter()
        job_id = _submit(session, base, "echo", {"i": i})
        while True:
            job = session.get(f"{base}/jobs/{job_id}", timeout=30).json()
            if job["state"]["status"].upper() in ("COMPLETED", "FAILED", "CANCELLED"):
                break
        observed.append(time.perf_counter() - started)
        metrics = session.get(f"{base}/jobs/{job_id}/metrics", timeout=30).json()["timestamps"]
        to_running.append(_stamp(metrics["running"]) - _stamp(metrics["created"]))
        to_done.append(_stamp(metrics["finished"]) - _stamp(metrics["created"]))
    return {
        "server submit->RUNNING p50 ms": statistics.median(to_running) * 1e3,
        "server submit->COMPLETED p50 ms": statistics.median(to_done) * 1e3,
        "client submit->COMPLETED seen p50 ms": statistics.median(observed) * 1e3,
    }


def submissions(session: requests.Session, base: str, count: int) -> dict[str, float]:
    """Jobs created per second, one POST after another."""
    started = time.perf_counter()
    for i in range(count):
        _submit(session, base, "echo", {"i": i})
    return {"sustained submissions per second": count / (time.perf_counter() - started)}


def subscribers(session: requests.Session, base: str, count: int) -> dict[str, float]:
    """``count`` sequenced websocket streams open at once, 10 interim results each."""
    ws_base = base.replace("http://", "ws://")
    ids = [_submit(session, base, "stream", {"count": 10, "interval": 0.01}) for _ in range(count)]
    received = [0] * count
    started = time.perf_counter()

    def read(index: int, job_id: str) -> None:
        ws = websocket.create_connection(
            f"{ws_base}/stream/jobs/{job_id}?seq=1",
            header=[f"X-Access-Token: {TOKEN}"],
            timeout=120,
        )
        try:
            ws.recv()  # the acknowledgement
            while True:
                frame = ws.recv()
                if not frame:
                    break
                header = json.loads(frame.split("\n", 1)[0])
                if header.get("final"):
                    break
                received[index] += 1
        except websocket.WebSocketConnectionClosedException:
            pass
        finally:
            ws.close()

    threads = [
        threading.Thread(target=read, args=(i, job_id), name=f"bench-sub-{i}")
        for i, job_id in enumerate(ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        f"{count} subscribers: wall s": time.perf_counter() - started,
        f"{count} subscribers: interim results delivered": float(sum(received)),
        f"{count} subscribers: expected": float(10 * count),
    }


def main() -> None:
    """Run the measurements and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke check)")
    args = parser.parse_args()
    n_latency, n_submit, n_subs = (20, 50, 50) if args.quick else (200, 500, 500)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        LocalRuntimeServer(data_dir=data_dir, tokens=[TOKEN], workers=4) as server,
        requests.Session() as session,
    ):
        session.headers["X-Access-Token"] = TOKEN
        results: dict[str, float] = {}
        _submit(session, server.url, "echo", {})  # warm up the pool and the connection
        results |= latency(session, server.url, n_latency)
        results |= submissions(session, server.url, n_submit)
        results |= subscribers(session, server.url, n_subs)
    print("| figure | value |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()

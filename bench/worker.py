"""One benchmark run: one scenario, one client, in a fresh process.

``bench/run.py`` starts this script once per run, with the interpreter of the client under
test:

- ``--client ours``: ``runtime_job.RuntimeService`` (main ``.venv``);
- ``--client ref``: the reference, ``qiskit_ibm_runtime.QiskitRuntimeService`` 0.11
  (``.venv-compat``);
- ``--client limit``: the same wire traffic by hand (``requests``, websocket-client,
  ``json.loads`` plus numpy; main ``.venv``), the physical limit.

The two clients have the same API, so ``ours`` and ``ref`` run the very same scenario code;
only the service construction differs (:func:`make_service`). The environment (server URL,
tokens, certificate) comes from ``BENCH_*`` variables set by ``run.py``. The result is one
JSON line on stdout, prefixed with ``BENCH-RESULT``; everything else goes to stderr.

Usage (normally only through ``run.py``)::

    python bench/worker.py --client ours --scenario status --args '{"calls": 500}'
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import os
import resource
import statistics
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
OPTIONS = {"backend": "local_simulator"}


# -- environment ---------------------------------------------------------------------------------


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"worker: {name} is not set (run through bench/run.py)")
    return value


def base_url() -> str:
    return env("BENCH_URL")


def cert_path() -> str:
    return env("BENCH_CERT")


def token(kind: str = "main") -> str:
    return env("BENCH_TOKEN_LIST" if kind == "list" else "BENCH_TOKEN")


def make_service(client: str, kind: str = "main") -> Any:
    """The client's service, logged in on the ibm_quantum channel of the local server."""
    url = base_url() + "/api"
    if client == "ours":
        from runtime_job import RuntimeService

        return RuntimeService(channel="ibm_quantum", url=url, token=token(kind), verify=cert_path())
    if client == "ref":
        import warnings

        from qiskit_ibm_runtime import QiskitRuntimeService

        # verify=False is what the reference needs on loopback TLS (compat/README.md); the
        # warning it triggers is silenced here so that stderr stays readable (the check that
        # decides whether to warn still runs on every request, as it would for a user).
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        return QiskitRuntimeService(channel="ibm_quantum", url=url, token=token(kind), verify=False)
    raise SystemExit(f"worker: no service for client {client!r}")


def client_versions(client: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["requests", "websocket-client", "numpy"]
    names.insert(0, "runtime-job" if client != "ref" else "qiskit-ibm-runtime")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


# -- the physical limit: raw requests and websocket-client -----------------------------------------


class Raw:
    """The same wire traffic as a client, written by hand with one ``requests.Session``."""

    def __init__(self, kind: str = "main", base: str | None = None) -> None:
        import requests

        self.base = base or base_url()
        self.session = requests.Session()
        self.session.verify = cert_path()
        login = self.session.post(
            f"{self.base}/api/users/loginWithToken", json={"apiToken": token(kind)}, timeout=30
        )
        login.raise_for_status()
        self.access = login.json()["id"]
        self.session.headers["X-Access-Token"] = self.access

    def get_json(self, path: str) -> Any:
        response = self.session.get(self.base + path, timeout=60)
        response.raise_for_status()
        return json.loads(response.content)

    def submit(self, program: str, params: dict[str, Any]) -> str:
        body = {"program_id": program, "params": params, "backend": "local_simulator"}
        body.update(hub="local", group="default", project="main")
        response = self.session.post(self.base + "/jobs", data=json.dumps(body), timeout=60)
        response.raise_for_status()
        return str(json.loads(response.content)["id"])

    def status(self, job_id: str) -> str:
        return str(self.get_json(f"/jobs/{job_id}")["state"]["status"])

    def finished_at(self, job_id: str) -> float:
        return iso_to_epoch(self.get_json(f"/jobs/{job_id}/metrics")["timestamps"]["finished"])

    def websocket(self, job_id: str, seq: bool) -> Any:
        import websocket

        url = self.base.replace("https", "wss", 1) + f"/stream/jobs/{job_id}"
        if seq:
            url += "?seq=1&after=0"
        return websocket.create_connection(
            url,
            header=[f"X-Access-Token: {self.access}"],
            sslopt={"ca_certs": cert_path()},
            skip_utf8_validation=True,
        )


def raw_wait_seq(ws: Any, on_interim: Callable[[Any], None] | None = None) -> Any:
    """Receive a sequenced stream until the final frame; return the decoded final result."""
    while True:
        text = ws.recv()
        if not text:
            raise RuntimeError("stream closed before the final frame")
        head, _, payload = text.partition("\n")
        header = json.loads(head)
        if header.get("ack"):
            continue
        if header.get("final"):
            return json.loads(payload) if payload else None
        if on_interim is not None:
            on_interim(json.loads(payload))


def numpy_hook(obj: dict[str, Any]) -> Any:
    """The naive decoding of the codec's ``ndarray`` tag: base64, zlib, ``np.load``."""
    if obj.get("__type__") == "ndarray":
        import numpy as np

        value = obj["__value__"]
        if isinstance(value, list):
            return np.array(value)
        return np.load(io.BytesIO(zlib.decompress(base64.b64decode(value))), allow_pickle=False)
    return obj


# -- measuring -----------------------------------------------------------------------------------


def _usage() -> tuple[int, int, int, int, int]:
    """This process's page faults (minor, major), context switches (voluntary,
    involuntary) and garbage collections so far: what a slow wait may owe to the machine."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    collections = sum(stat["collections"] for stat in gc.get_stats())
    return use.ru_minflt, use.ru_majflt, use.ru_nvcsw, use.ru_nivcsw, collections


_USAGE_FIELDS = ("minflt", "majflt", "nvcsw", "nivcsw", "gc")


def iso_to_epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def proc_status_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if field == "VmHWM" else 0


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark (``VmHWM``, ``ru_maxrss``) to the current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class Sampler:
    """Samples the number of threads (and the RSS) every few milliseconds."""

    def __init__(self, period: float = 0.002) -> None:
        self.period = period
        self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # The sampler itself is not counted.
            self.peak_threads = max(self.peak_threads, threading.active_count() - 1)
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def at_depth(depth: int, call: Callable[[], Any]) -> Any:
    """Run ``call`` ``depth`` Python frames deeper than here."""
    if depth <= 0:
        return call()
    return at_depth(depth - 1, call)


def wait_until(predicate: Callable[[], bool], timeout: float, period: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


# -- scenario 1: status() round trip -------------------------------------------------------------


def scenario_status(client: str, args: dict[str, Any]) -> dict[str, Any]:
    calls, warmup, depths = int(args["calls"]), int(args.get("warmup", 30)), args["depths"]
    seconds = float(args["sleep"])
    if client == "limit":
        raw = Raw()
        job_id = raw.submit("sleep", {"seconds": seconds})
        wait_until(lambda: raw.status(job_id).upper() == "RUNNING", 30)
        probe: Callable[[], Any] = lambda: raw.status(job_id)  # noqa: E731
    else:
        service = make_service(client)
        job = service.run("sleep", {"seconds": seconds}, options=OPTIONS)
        wait_until(lambda: job.status().name == "RUNNING", 30)
        probe = job.status
    out: dict[str, Any] = {}
    for depth in depths:

        def loop() -> list[float]:
            times = []
            for i in range(warmup + calls):
                start = time.perf_counter()
                value = probe()
                elapsed = time.perf_counter() - start
                if i >= warmup:
                    times.append(elapsed)
            if str(getattr(value, "name", value)).upper() != "RUNNING":
                raise RuntimeError(f"the job left RUNNING during the measurement ({value})")
            return times

        before = _usage()
        times = at_depth(int(depth), loop)
        after = _usage()
        out[f"depth{depth}"] = {
            "usage": {k: b - a for k, a, b in zip(_USAGE_FIELDS, before, after, strict=True)},
            "p50_ms": percentile(times, 50) * 1e3,
            "p99_ms": percentile(times, 99) * 1e3,
            "mean_ms": statistics.fmean(times) * 1e3,
            "calls": len(times),
        }
    if client == "limit":
        out["stdlib"] = _stdlib_round_trips(raw, job_id, calls, warmup)
    # The sleeping job is left to finish by itself (cancelling would make the server replace
    # its worker process while the next run measures).
    return out


def _stdlib_round_trips(raw: Raw, job_id: str, calls: int, warmup: int) -> dict[str, float]:
    """The same GET with the standard library's ``http.client``: the floor under requests."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(raw.base)
    context = ssl.create_default_context(cafile=cert_path())
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context)
    headers = {"X-Access-Token": raw.access}
    times = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        conn.request("GET", f"/jobs/{job_id}", headers=headers)
        json.loads(conn.getresponse().read())["state"]["status"]
        if i >= warmup:
            times.append(time.perf_counter() - start)
    conn.close()
    return {"p50_ms": percentile(times, 50) * 1e3, "p99_ms": percentile(times, 99) * 1e3}


# -- scenario 2: completion detection ------------------------------------------------------------


def scenario_completion(client: str, args: dict[str, Any]) -> dict[str, Any]:
    """Time from the server's recorded completion instant to ``result()`` returning."""
    mode, jobs, seconds = args["mode"], int(args["jobs"]), float(args["sleep"])
    background = int(args.get("background", 0))
    interval = float(args.get("bg_interval", 0.05))
    latencies: list[float] = []
    usages: list[tuple[int, ...]] = []
    received: list[Any] = []

    def noop(job_id: str, message: Any) -> None:
        received.append(message)

    raw = Raw() if client == "limit" else None
    service = None if client == "limit" else make_service(client)
    for _ in range(jobs):
        bg_count = int((seconds + 1.0) / interval) if background else 0
        threads: list[threading.Thread] = []
        bg_jobs: list[Any] = []
        for _ in range(background):
            inputs = {"count": bg_count, "interval": interval}
            if raw is not None:
                ws = raw.websocket(raw.submit("bench-stream", inputs), seq=True)
                thread = threading.Thread(target=raw_wait_seq, args=(ws, noop), daemon=True)
                thread.start()
                threads.append(thread)
            else:
                assert service is not None
                bg_jobs.append(service.run("bench-stream", inputs, options=OPTIONS, callback=noop))
        if background:
            time.sleep(0.2)  # the background streams are open and flowing
        if raw is not None:
            job_id = raw.submit("sleep", {"seconds": seconds})
            before = _usage()
            ws = raw.websocket(job_id, seq=True)
            value = raw_wait_seq(ws, (lambda m: None) if mode == "callback" else None)
            returned = time.time()
            after = _usage()
            ws.close()
            finished = raw.finished_at(job_id)
        else:
            assert service is not None
            callback = noop if mode == "callback" else None
            job = service.run("sleep", {"seconds": seconds}, options=OPTIONS, callback=callback)
            before = _usage()
            value = job.result()
            returned = time.time()
            after = _usage()
            finished = iso_to_epoch(job.metrics()["timestamps"]["finished"])
        if not (isinstance(value, dict) and value.get("slept") == seconds):
            raise RuntimeError(f"unexpected result {value!r}")
        latencies.append(returned - finished)
        usages.append(tuple(b - a for a, b in zip(before, after, strict=True)))
        for thread in threads:
            thread.join(60)
        for bg in bg_jobs:
            bg.result(timeout=60)
    return {
        "latencies_ms": [x * 1e3 for x in latencies],
        "p50_ms": statistics.median(latencies) * 1e3,
        "max_ms": max(latencies) * 1e3,
        # from the submission's answer to the result, summed over the jobs
        "usage": {k: sum(u[i] for u in usages) for i, k in enumerate(_USAGE_FIELDS)},
        "threads": threading.active_count(),
    }


# -- scenario 7: completion detection without a stream (the client polls) ----------------------


class StatusCounter:
    """Counts the ``GET /jobs/{id}`` requests of this process (every client uses requests).

    It wraps ``requests.adapters.HTTPAdapter.send``, which each request of ours, of the
    reference and of the limit goes through (retries included).
    """

    def __init__(self) -> None:
        from urllib.parse import urlsplit

        import requests.adapters

        self.count = 0
        original = requests.adapters.HTTPAdapter.send
        counter = self

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if request.method == "GET":
                parts = urlsplit(request.url).path.rstrip("/").split("/")
                if len(parts) >= 2 and parts[-2] == "jobs":
                    counter.count += 1
            return original(adapter, request, *args, **kwargs)

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


def scenario_polling(client: str, args: dict[str, Any]) -> dict[str, Any]:
    """Completion to ``result()`` against a server that does not stream (``--no-streams``).

    ``ours`` and ``ref`` call ``result()`` right after ``run()`` (each opens a stream, the
    server closes it at once, each polls). The limit learns of completion as soon as one
    round trip can: ``GET /jobs/{id}`` back to back, then ``GET /jobs/{id}/results``.
    """
    jobs, seconds = int(args["jobs"]), float(args["sleep"])
    counter = StatusCounter()
    raw = Raw() if client == "limit" else None
    service = None if client == "limit" else make_service(client)
    latencies: list[float] = []
    requests_per_job: list[int] = []
    for _ in range(jobs):
        before = counter.count
        if raw is not None:
            job_id = raw.submit("sleep", {"seconds": seconds})
            while raw.status(job_id).upper() not in ("COMPLETED", "FAILED", "CANCELLED"):
                pass
            response = raw.session.get(f"{raw.base}/jobs/{job_id}/results", timeout=60)
            response.raise_for_status()
            value = json.loads(response.content)
            returned = time.time()
            requests_per_job.append(counter.count - before)
            finished = raw.finished_at(job_id)
        else:
            assert service is not None
            job = service.run("sleep", {"seconds": seconds}, options=OPTIONS)
            value = job.result(timeout=seconds + 120)
            returned = time.time()
            requests_per_job.append(counter.count - before)
            finished = iso_to_epoch(job.metrics()["timestamps"]["finished"])
        if not (isinstance(value, dict) and value.get("slept") == seconds):
            raise RuntimeError(f"unexpected result {value!r}")
        latencies.append(returned - finished)
    return {
        "latencies_ms": [x * 1e3 for x in latencies],
        "requests": requests_per_job,
        "p50_ms": statistics.median(latencies) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


# -- scenario 3: concurrent streaming ------------------------------------------------------------


def scenario_streaming(client: str, args: dict[str, Any]) -> dict[str, Any]:
    """N ``bench-stream`` jobs, each streamed to a callback (the limit: a thread per job).

    Scenarios 3 (``streaming``), 8 (``held``, on the server that holds each job for its
    client), 9 (``common``) and 10 (``burst``, on the server that does not replay). With
    ``start_in`` (seconds), the worker picks the instant ``time.time() + start_in`` just
    before its first submission and gives it to every job as ``start_at``: all jobs then start
    publishing at that one instant, once the client has submitted them all (if ``start_in`` is
    long enough: ``start_missed`` says when not). With ``delay``, each job publishes its
    first interim result that long after it starts running.
    """
    n, count, interval = int(args["jobs"]), int(args["count"]), float(args["interval"])
    timeout = float(args["timeout"])
    pace = float(args.get("pace", 0.0))
    start_in = float(args.get("start_in", 0.0))

    def wait_turn(k: int) -> None:
        # Job k is submitted no earlier than k * pace after the first: every client then
        # loads the shared server alike, however fast its run() is.
        ahead = start + k * pace - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)

    _raise_fd_limit()
    if client == "limit":
        import websocket  # noqa: F401  (imported before the clock starts, as the clients do)
    lock = threading.Lock()
    indices: list[list[int]] = [[] for _ in range(n)]
    delays: list[float] = []
    finals = [threading.Event() for _ in range(n)]
    final_counts = [0] * n
    run_times: list[float] = []  # each run() of a client (the limit: none)

    def on_message(k: int, message: Any) -> None:
        now = time.time()
        if not isinstance(message, dict):
            return
        with lock:
            if "t" in message:
                delays.append(now - float(message["t"]))
            if "index" in message:
                indices[k].append(int(message["index"]))
            elif "count" in message:
                final_counts[k] += 1
                finals[k].set()

    # Log in (and import everything) before measuring.
    raw = Raw() if client == "limit" else None
    service = make_service(client) if raw is None else None
    if args.get("warmup"):
        _warm_stream(raw, service)
    gc.collect()
    rss_before = proc_status_kib("VmRSS")
    reset_peak_rss()
    threads_before = threading.active_count()
    inputs: dict[str, Any] = {"count": count, "interval": interval}
    if args.get("delay"):
        inputs["delay"] = float(args["delay"])
    with Sampler() as sampler:
        if start_in:
            inputs["start_at"] = time.time() + start_in
        start = time.perf_counter()
        if raw is not None:

            def receive(k: int, job_id: str) -> None:
                ws = raw.websocket(job_id, seq=False)
                try:
                    while not finals[k].is_set():
                        text = ws.recv()
                        if not text:
                            break
                        if text == "ACK":
                            continue
                        on_message(k, json.loads(text))
                finally:
                    ws.close()

            for k in range(n):
                wait_turn(k)
                job_id = raw.submit("bench-stream", inputs)
                threading.Thread(target=receive, args=(k, job_id), daemon=True).start()
        else:
            assert service is not None
            for k in range(n):

                def callback(job_id: str, message: Any, k: int = k) -> None:
                    on_message(k, message)

                wait_turn(k)
                t0 = time.perf_counter()
                service.run("bench-stream", inputs, options=OPTIONS, callback=callback)
                run_times.append(time.perf_counter() - t0)
        submitted = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        for event in finals:
            event.wait(max(0.0, deadline - time.monotonic()))
        wall = time.perf_counter() - start
    complete = all(event.is_set() for event in finals)
    with lock:
        lost_by_job = {k: len(set(range(count)) - set(got)) for k, got in enumerate(indices)}
        lost = sum(lost_by_job.values())
        duplicated = sum(len(got) - len(set(got)) for got in indices)
        out_of_order = sum(got != sorted(got) for got in indices)
        finals_missing = sum(1 for c in final_counts if c == 0)
        finals_duplicated = sum(c - 1 for c in final_counts if c > 1)
        delay_list = list(delays)
    return {
        "jobs": n,
        "start_in": start_in,
        "start_missed": bool(start_in) and submitted > start_in,
        "complete": complete,
        "timed_out": not complete,
        "wall_s": wall,
        "submit_s": submitted,
        "lost": lost + finals_missing,
        "lost_interim": lost,
        "run_ms": [round(t * 1e3, 2) for t in run_times],
        "lost_interim_jobs": {str(k): v for k, v in lost_by_job.items() if v},  # by submission
        "duplicated": duplicated + finals_duplicated,
        "out_of_order_jobs": out_of_order,
        "delivered": sum(len(x) for x in indices) + sum(final_counts),
        "expected": n * (count + 1),
        "delay_max_ms": max(delay_list) * 1e3 if delay_list else float("nan"),
        "delay_p50_ms": statistics.median(delay_list) * 1e3 if delay_list else float("nan"),
        "peak_threads": sampler.peak_threads,
        "threads_before": threads_before - 1,
        "rss_before_mib": rss_before / 1024,
        "rss_growth_mib": (proc_status_kib("VmHWM") - rss_before) / 1024,
        "peak_rss_mib": proc_status_kib("VmHWM") / 1024,
    }


def _warm_stream(raw: Raw | None, service: Any) -> None:
    """One job of one interim result with its stream, before the clock: what a client does
    once per process (its stream machinery's start, its first websocket) is not timed."""
    inputs = {"count": 1, "interval": 0.0}
    if raw is not None:
        ws = raw.websocket(raw.submit("bench-stream", inputs), seq=True)
        try:
            raw_wait_seq(ws)
        finally:
            ws.close()
        return
    service.run("bench-stream", inputs, options=OPTIONS, callback=lambda *a: None).result(
        timeout=60
    )


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# -- scenario 4: large results -------------------------------------------------------------------


def scenario_large(client: str, args: dict[str, Any]) -> dict[str, Any]:
    """``result()`` of a finished job whose result is ``mib`` MiB of float64 arrays.

    The job is already final, and its status was asked once (so both clients cache it):
    what is timed is ``result()``, that is one ``GET /jobs/{id}/results`` and the decoding.
    """
    job_id = args["job_id"]
    if client == "limit":
        import numpy  # noqa: F401  (imported before the clock starts, as the clients do)

        raw = Raw()
        raw.status(job_id)

        def fetch() -> Any:
            response = raw.session.get(f"{raw.base}/jobs/{job_id}/results", timeout=300)
            response.raise_for_status()
            return json.loads(response.content, object_hook=numpy_hook)

    else:
        service = make_service(client)
        job = service.job(job_id)
        if job.status().name != "DONE":
            raise RuntimeError(f"job {job_id} is not done")
        fetch = job.result
    gc.collect()
    rss_before = proc_status_kib("VmRSS")
    reset = reset_peak_rss()
    start = time.perf_counter()
    value = fetch()
    elapsed = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")
    # The result carries its own checksum and size (see bench_programs.arrays).
    checksum, nbytes = float(value["checksum"]), int(value["nbytes"])
    got = float(sum(float(v.sum()) for k, v in value.items() if k.startswith("array_")))
    if abs(got - checksum) > 1e-6 * abs(checksum):
        raise RuntimeError(f"wrong result: checksum {got} != {checksum}")
    return {
        "seconds": elapsed,
        "rss_growth_mib": (peak - rss_before) / 1024,
        "growth_x": (peak - rss_before) * 1024 / nbytes,
        "peak_rss_mib": peak / 1024,
        "peak_reset": reset,
    }


# -- scenario 5: listing -------------------------------------------------------------------------


def scenario_listing(client: str, args: dict[str, Any]) -> dict[str, Any]:
    expected, ids, repeats = int(args["expected"]), list(args["ids"]), int(args["repeats"])
    if client == "limit":
        raw = Raw("list")

        def list_all() -> int:
            got: list[Any] = []
            while True:
                page = raw.get_json(f"/jobs?limit=1000&offset={len(got)}")
                got.extend(page["jobs"])
                if not page["jobs"] or len(got) >= page["count"]:
                    return len(got)

        def get_one(job_id: str) -> Any:
            return raw.get_json(f"/jobs/{job_id}?exclude_params=true")["id"]

    else:
        service = make_service(client, "list")

        def list_all() -> int:
            return len(service.jobs(limit=None))

        def get_one(job_id: str) -> Any:
            return service.job(job_id).job_id()

    list_times, get_times = [], []
    list_all()  # warm: the connection is open, lazy imports are done
    for _ in range(repeats):
        start = time.perf_counter()
        n = list_all()
        list_times.append(time.perf_counter() - start)
        if n != expected:
            raise RuntimeError(f"listed {n} jobs, expected {expected}")
        start = time.perf_counter()
        for job_id in ids:
            get_one(job_id)
        get_times.append(time.perf_counter() - start)
    return {"list_s": list_times, "get100_s": get_times}


# -- scenario 6: submission ----------------------------------------------------------------------


def scenario_submit(client: str, args: dict[str, Any]) -> dict[str, Any]:
    jobs, warmup = int(args["jobs"]), int(args.get("warmup", 5))
    inputs = {"x": 1}
    if client == "limit":
        raw = Raw()

        def submit() -> Any:
            return raw.submit("echo", inputs)

    else:
        service = make_service(client)

        def submit() -> Any:
            return service.run("echo", inputs, options=OPTIONS)

    for _ in range(warmup):
        submit()
    times = []
    start = time.perf_counter()
    for _ in range(jobs):
        t0 = time.perf_counter()
        submit()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return {
        "p50_ms": percentile(times, 50) * 1e3,
        "p99_ms": percentile(times, 99) * 1e3,
        "jobs_per_s": jobs / total,
    }


# -- main ----------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "status": scenario_status,
    "completion": scenario_completion,
    "streaming": scenario_streaming,
    "held": scenario_streaming,  # the same, against a server that holds jobs for their client
    "common": scenario_streaming,  # the same, every job publishing from one instant (start_in)
    "burst": scenario_streaming,  # the same, unpaced, against a server that does not replay
    "large": scenario_large,
    "listing": scenario_listing,
    "submit": scenario_submit,
    "polling": scenario_polling,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("ours", "ref", "limit"), required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--args", default="{}", help="the scenario's arguments, JSON")
    parser.add_argument("--versions", action="store_true", help="print package versions")
    parser.add_argument(
        "--profile", metavar="FILE", help="profile the run with pyinstrument, report to FILE"
    )
    options = parser.parse_args()
    code = 0
    try:
        if options.versions:
            result: dict[str, Any] = {"versions": client_versions(options.client)}
        elif options.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            result = SCENARIOS[options.scenario](options.client, json.loads(options.args))
            profiler.stop()
            with open(options.profile, "w") as handle:
                handle.write(profiler.output_text(unicode=False, color=False, show_all=False))
        else:
            result = SCENARIOS[options.scenario](options.client, json.loads(options.args))
    except BaseException as err:  # reported to run.py, which says which run failed
        traceback.print_exc()
        result = {"error": f"{type(err).__name__}: {err}"}
        code = 1
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a reference stream still open would otherwise hold the interpreter's exit
    # (its pool threads are joined at exit), and nothing is left to clean up.
    os._exit(code)


if __name__ == "__main__":
    main()

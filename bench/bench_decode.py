"""Benchmark: decoding large results, ours against the reference's algorithm.

Builds results made of random float64 arrays (encoded as a reference server would: base64
of zlib of ``np.save`` bytes), then decodes each one, alternating between methods, each
measurement in a fresh subprocess so that peak RSS growth is per run:

* ``reference``: ``json.loads`` with an object hook doing base64 -> zlib -> ``np.load``
  (the reference's algorithm, written here);
* ``ours``: ``ResultDecoder.decode`` with whatever accelerators are installed;
* ``ours-stdlib``: ``ResultDecoder.decode`` restricted to the standard library.

Each method is run on the payload as ``str`` (what ``response.text`` gives) and as ``bytes``
(``response.content``). Peak RSS growth is ``ru_maxrss`` after decoding minus ``ru_maxrss``
just before, with the payload already in memory and the high-water mark reset
(``/proc/self/clear_refs``), as a multiple of the arrays' size.

Usage::

    python bench/bench_decode.py            # 100 MiB and 20 MiB, 5 repetitions
    python bench/bench_decode.py --quick    # 20 MiB and 4 MiB, 2 repetitions
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("reference", "ours", "ours-stdlib")
INPUTS = ("str", "bytes")
MIB = 1024 * 1024


def _reference_hook(obj: dict[str, Any]) -> Any:
    """The reference's decoding of ``ndarray`` tags (the only ones in these payloads)."""
    if "__type__" in obj and obj["__type__"] == "ndarray":
        value = obj["__value__"]
        if isinstance(value, list):
            return np.array(value)
        return np.load(io.BytesIO(zlib.decompress(base64.b64decode(value))))
    return obj


def _reference_encode(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The reference's encoding of a numeric array."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    text = base64.standard_b64encode(zlib.compress(buffer.getvalue())).decode("utf-8")
    return {"__type__": "ndarray", "__value__": text}


def build_payload(path: Path, size_mib: int, arrays: int, encoder: str) -> dict[str, Any]:
    """Write a result of ``arrays`` random float64 arrays totalling ``size_mib`` MiB."""
    rng = np.random.default_rng(size_mib)
    per_array = size_mib * MIB // arrays // 8
    rows = max(per_array // 1000, 1)
    values = {f"array_{i}": rng.random((rows, per_array // rows)) for i in range(arrays)}
    checksum = float(sum(float(a.sum()) for a in values.values()))
    nbytes = sum(a.nbytes for a in values.values())
    meta = {"shots": 4000, "backend": "bench", "checksum": checksum}
    if encoder == "reference":
        doc = {name: _reference_encode(a) for name, a in values.items()}
        doc["metadata"] = meta
        text = json.dumps(doc)
    else:
        from runtime_job.codec import dumps

        text = dumps({**values, "metadata": meta})
    path.write_text(text, encoding="ascii")
    return {"path": str(path), "nbytes": nbytes, "text_bytes": len(text), "checksum": checksum}


def _rss_peak_kib() -> int:
    """This process's peak RSS in KiB.

    ``VmHWM`` is the number ``ru_maxrss`` reports, minus what ``ru_maxrss`` inherits from the
    parent across ``fork`` + ``exec``; both are reset by ``/proc/self/clear_refs``.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def worker(method: str, kind: str, path: str, checksum: float) -> dict[str, Any]:
    """One measurement (runs in its own process)."""
    from runtime_job.decoders import ResultDecoder

    class StdlibDecoder(ResultDecoder):
        @classmethod
        def _loads(cls, raw: str | bytes) -> Any:
            from runtime_job import codec

            return codec.loads(raw, accelerated=False)

    raw: str | bytes = Path(path).read_bytes()
    if kind == "str":
        raw = raw.decode("ascii")
    if method == "reference":

        def decode(payload: str | bytes) -> Any:
            return json.loads(payload, object_hook=_reference_hook)

    elif method == "ours":
        decode = ResultDecoder.decode
    else:
        decode = StdlibDecoder.decode
    gc.collect()
    reset = _reset_peak()
    before = _rss_peak_kib()
    start = time.perf_counter()
    result = decode(raw)
    elapsed = time.perf_counter() - start
    peak = _rss_peak_kib()
    got = float(sum(float(a.sum()) for k, a in result.items() if k.startswith("array_")))
    if not np.isclose(got, checksum, rtol=1e-9):
        raise SystemExit(f"{method}: wrong result (checksum {got} != {checksum})")
    return {"seconds": elapsed, "growth_kib": peak - before, "peak_reset": reset}


def _run_one(method: str, kind: str, info: dict[str, Any]) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        kind,
        info["path"],
        repr(info["checksum"]),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions")
    parser.add_argument("--sizes", help="comma-separated sizes in MiB (default 100,20)")
    parser.add_argument("--arrays", type=int, default=8, help="arrays per result (default 8)")
    parser.add_argument("--repeats", type=int, help="repetitions per method (default 5)")
    parser.add_argument(
        "--encoder",
        choices=("reference", "ours"),
        default="reference",
        help="who writes the payload (default: the reference's encoder, as IBM servers do)",
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        path, size, arrays, encoder = args.build
        print(json.dumps(build_payload(Path(path), int(size), int(arrays), encoder)))
        return 0
    if args.worker:
        method, kind, path, checksum = args.worker
        print(json.dumps(worker(method, kind, path, float(checksum))))
        return 0
    sizes = [int(s) for s in (args.sizes or ("20,4" if args.quick else "100,20")).split(",")]
    repeats = args.repeats or (2 if args.quick else 5)
    from runtime_job.codec import accelerators

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, accelerators: {', '.join(accelerators()) or 'none'}",
        file=sys.stderr,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            # Built in a child process, so this one stays small while it spawns the workers.
            build = [sys.executable, __file__, "--build", str(Path(tmp) / f"result-{size}.json")]
            build += [str(size), str(args.arrays), args.encoder]
            done = subprocess.run(build, check=True, capture_output=True, text=True)
            info = json.loads(done.stdout)
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for repeat in range(repeats):
                for kind in INPUTS:
                    for method in METHODS:
                        result = _run_one(method, kind, info)
                        runs.setdefault((method, kind), []).append(result)
                        print(
                            f"{size} MiB #{repeat} {kind:5s} {method:11s} "
                            f"{result['seconds']:.3f} s {result['growth_kib'] / 1024:.0f} MiB",
                            file=sys.stderr,
                        )
            for kind in INPUTS:
                ref_time = statistics.median(r["seconds"] for r in runs[("reference", kind)])
                for method in METHODS:
                    results = runs[(method, kind)]
                    seconds = statistics.median(r["seconds"] for r in results)
                    growth = statistics.median(r["growth_kib"] for r in results) * 1024
                    rows.append(
                        f"| {size} MiB ({info['text_bytes'] / MIB:.0f} MiB text) | {kind} | "
                        f"{method} | {seconds:.3f} | {ref_time / seconds:.2f}x | "
                        f"{growth / MIB:.0f} MiB | {growth / info['nbytes']:.2f}x |"
                    )
    print(
        "| result (arrays) | input | method | median s | speed-up vs reference "
        "| peak RSS growth | growth / result size |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{repeats} repetitions per cell, {args.arrays} arrays per result.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

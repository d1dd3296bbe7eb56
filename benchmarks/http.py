"""Benchmark 2: over HTTP, uvicorn on loopback loaded by wrk (Debian's `wrk` package) from another
process for a fixed duration, with and without usage_stats, interleaved.

wrk sends 20 routes with a path parameter and 1,000 client addresses in `X-Forwarded-For` (uvicorn
trusts it from loopback, as behind a local proxy), so usage_stats sees 1,000 visitors.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import Section

_SCRIPT = """
math.randomseed(1)
local addrs = {}
for i = 1, 1000 do
  addrs[i] = string.format("198.%d.%d.%d", 18 + (i % 2), math.random(0, 255), math.random(1, 254))
end
request = function()
  local path = string.format("/r%d/items/%d", math.random(0, 19), math.random(0, 99999))
  return wrk.format("GET", path, {["X-Forwarded-For"] = addrs[math.random(1, 1000)]})
end
"""

_VARIANTS = {"none": "no middleware", "noop": "no-op ASGI middleware", "usage_stats": "usage_stats"}
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("uvicorn did not start in time")


def _latency(text: str, pct: str) -> float:
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def _pinned(cpu: int) -> list[str]:
    """Server and load generator on a core each, when `taskset` is there and there are two cores."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_once(kind: str, variant: str, seconds: int, script: Path) -> tuple[float, float, float, float]:
    """(requests/s, p50 s, p99 s, server CPU s per request) of one wrk run against a fresh uvicorn."""
    port = _free_port()
    env = dict(os.environ, BENCH_KIND=kind, BENCH_VARIANT=variant)
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.apps:http_app", "--factory", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--no-access-log", "--log-level", "warning", "--forwarded-allow-ips", "127.0.0.1"]
    server = subprocess.Popen(_pinned(0) + cmd, env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        _wait_ready(port, server)
        url = f"http://127.0.0.1:{port}"
        warm = [*_pinned(1), "wrk", "-t1", "-c8", "-d1s", "-s", str(script), url]
        subprocess.run(warm, capture_output=True, check=True, timeout=30)
        load = [*_pinned(1), "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url]
        cpu = _cpu_seconds(server.pid)
        out = subprocess.run(load, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
        cpu = _cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if m is None or total is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run failed:\n{out}")
    return float(m.group(1)), _latency(out, "50"), _latency(out, "99"), cpu / int(total.group(1))


def run(quick: bool = False) -> Section:
    seconds, rounds = (3, 1) if quick else (4, 3)
    section = Section(
        "2. Over HTTP (uvicorn, wrk on loopback)",
        f"One uvicorn worker on core 0, wrk -t1 -c32 on core 1, {seconds} s per run, {rounds} interleaved rounds "
        "per variant; 20 routes, 1,000 client addresses via X-Forwarded-For. Requests/s is the best run of each "
        "variant (other processes on this shared machine only ever slow a run down); latencies are medians. "
        "The server's CPU time per request (median) gives the same ratio without the load generator's noise.",
    )
    if shutil.which("wrk") is None:
        section.row("wrk", "not installed (`apt-get install wrk`)", "", "", False)
        return section
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "traffic.lua"
        script.write_text(_SCRIPT)
        for kind in ("starlette", "fastapi"):
            results: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v in _VARIANTS}
            rng = random.Random(5)
            for _ in range(rounds):
                order = list(_VARIANTS)
                rng.shuffle(order)
                for variant in order:
                    results[variant].append(_run_once(kind, variant, seconds, script))
            med = {
                v: (
                    max(x[0] for x in rs),
                    statistics.median(x[1] for x in rs),
                    statistics.median(x[2] for x in rs),
                    statistics.median(x[3] for x in rs),
                )
                for v, rs in results.items()
            }
            title = "Starlette" if kind == "starlette" else "FastAPI"
            for variant, label in _VARIANTS.items():
                rps, p50, p99, _ = med[variant]
                section.row(
                    f"{title}: {label}",
                    f"{rps:,.0f} req/s; p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms",
                    "1.00" if variant == "none" else f"{rps / med['none'][0]:.3f} of bare req/s",
                    "≥ 0.97" if variant == "usage_stats" else "",
                    rps >= 0.97 * med["none"][0] if variant == "usage_stats" else None,
                )
            bare_cpu = med["none"][3]
            for variant in ("noop", "usage_stats"):
                cpu = med[variant][3]
                section.row(
                    f"{title}: server CPU per request, {_VARIANTS[variant]} vs bare",
                    f"{cpu * 1e6:.0f} vs {bare_cpu * 1e6:.0f} µs",
                    f"{bare_cpu / cpu:.3f} of bare req/s per core",
                    "≥ 0.97" if variant == "usage_stats" else "",
                    bare_cpu >= 0.97 * cpu if variant == "usage_stats" else None,
                )
    return section

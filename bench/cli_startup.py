"""How long the `loop` command takes to answer when it needs no model: help, and `ps`, `status` and
`annotators list` with nothing running.

    .venv/bin/python -m bench.cli_startup                  # median of 7 runs per command, a markdown table
    .venv/bin/python -m bench.cli_startup --repeats 11 --json

Each command runs as a fresh process (`.venv/bin/loop ...`, the installed entry point; `python -m
loop.cli.main ...` where it is missing), so the figure includes the interpreter's start and every
import the command pulls in, as a user sees it. One warm-up run per command first (the page cache),
then --repeats timed runs; the table gives the median, the fastest and the slowest wall-clock time.

`loop ps`, `loop status` and `loop annotators list` run against nothing: a fresh empty workspace
in a temporary folder and free ports for Redis, Label Studio and the ML backend, so `ps` reports
every service down and the other two print their one-line "Error: ... Redis ..." (exit code 1,
expected). The environment's LOOP_*/REDIS_URL/LABEL_STUDIO_* settings are dropped, and the current directory
is that temporary folder (no loop.toml is read).

Where the time goes: `python -X importtime -m loop.cli.main --help 2>&1 | sort -t'|' -k2 -n | tail`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = (("loop --help", ["--help"], 0),
            ("loop status --help", ["status", "--help"], 0),
            ("loop ps (nothing running)", ["ps"], 1),
            ("loop status (no Redis)", ["status"], 1),
            ("loop annotators list (no Redis)", ["annotators", "list"], 1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loop_argv() -> list[str]:
    exe = Path(sys.executable).with_name("loop")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "loop.cli.main"]


def clean_env(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOP_", "LABEL_STUDIO_")) and k != "REDIS_URL"}
    env.update({"LOOP_WORKSPACE": str(workspace), "LOOP_REDIS_PORT": str(_free_port()),
                "LOOP_LABEL_STUDIO_PORT": str(_free_port()), "LOOP_ML_BACKEND_PORT": str(_free_port()),
                "PYTHONPATH": str(REPO), "COLUMNS": "100"})
    return env


def time_command(argv: list[str], env: dict[str, str], cwd: Path, expect: int, repeats: int) -> list[float]:
    times = []
    for i in range(repeats + 1):  # the first run warms the page cache and is not counted
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        elapsed = time.perf_counter() - start
        if proc.returncode != expect:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}, expected {expect}:\n{proc.stderr}")
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="Timed runs per command (after one warm-up).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loop-cli-startup-"))
    try:
        env = clean_env(tmp / "ws")
        results = {}
        for name, extra, expect in COMMANDS:
            times = time_command(loop_argv() + extra, env, tmp, expect, args.repeats)
            results[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                             "max_s": round(max(times), 3), "runs": len(times)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"command": " ".join(loop_argv()), "python": sys.version.split()[0],
                          "cpus": os.cpu_count(), "results": results}, indent=2))
        return
    print(f"`{' '.join(loop_argv())}`, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{args.repeats} runs each\n")
    print("| command | median s | min s | max s |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| `{name}` | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} |")


if __name__ == "__main__":
    main()

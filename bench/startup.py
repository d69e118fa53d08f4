"""Benchmark: how long a run-once task of the quickstart zip takes, cold and warm.

    python bench/startup.py [--repeat 5]

Cold: no cached task environment (a fresh ORCHZIP_ENV_CACHE; uv's own package cache stays
warm, as on any machine that ran orchzip before). Warm: the environment is cached.
orchzip's share of a warm run is everything but main.py's own work: the CLI starting, the
zip unpacked, the environment looked up, the task interpreter started, the run recorded.
main.py's work is timed by the task bootstrap (the main_started / main_ended events).
Targets: warm <= 1.5 s; orchzip's share <= 0.5 s.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(state_dir):
    from orchzip.builder import build
    from orchzip.runtime import quickstart
    from orchzip.runtime.store import Store

    store = Store(state_dir)
    quickstart.prepare(store)
    store.close()
    return build(os.path.join(REPO, "orchestrations", "houseprice_local"), os.path.join(state_dir, "dist")).zip_path


def timed_run(state_dir, zip_path, env):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", zip_path, "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"orchzip run failed:\n{done.stdout}\n{done.stderr}")
    run = json.loads(done.stdout)
    timings = {}
    with open(os.path.join(os.path.dirname(run["log_path"]), "events.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            if event.get("event") in ("main_started", "main_ended"):
                timings[event["event"]] = event["at"]
    main_seconds = timings["main_ended"] - timings["main_started"]
    return wall, main_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs to take the median of")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orchzip-startup-") as tmp:
        state_dir = os.path.join(tmp, "state")
        zip_path = prepare(state_dir)
        env = dict(os.environ, ORCHZIP_ENV_CACHE=os.path.join(tmp, "envs"))
        cold, cold_main = timed_run(state_dir, zip_path, env)
        warm = [timed_run(state_dir, zip_path, env) for _ in range(opts.repeat)]
    walls = [w for w, _ in warm]
    shares = [w - m for w, m in warm]
    print(f"cold run (builds the task environment): {cold:6.2f} s  (main.py {cold_main:.2f} s)")
    print(f"warm run, median of {opts.repeat}:           {statistics.median(walls):6.2f} s  "
          f"(min {min(walls):.2f}, max {max(walls):.2f}; target <= 1.5)")
    print(f"  main.py's own work:                 {statistics.median([m for _, m in warm]):6.2f} s")
    print(f"  orchzip's share:                    {statistics.median(shares):6.2f} s  (target <= 0.5)")


if __name__ == "__main__":
    main()

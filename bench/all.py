"""Every benchmark of issue #10, one after another, each printing its ratios:

    uv run python bench/all.py [--quick]

- P1, P4  hot_path.py      the token read against bare Starlette (+ asyncpg), 1 and 2 workers
- P2      refresh_storm.py 500 concurrent reads of 50 expiring grants over 2 replicas
- P3      sweeps.py        claims at 10,000 and 100,000 grants due, then a paced sweep

The sweep is paced at SWEEP_QPS, well within what the 2-core development machine sustains
with the emulator, PostgreSQL and two server processes sharing it, over the first SWEEP_GRANTS
grants; at a budget the machine cannot keep up with, the sweep's length shows by how much (see
docs/performance.md).
`--quick` runs each with less data and shorter rounds, to check that they work.
"""

from __future__ import annotations

import argparse
import time

import hot_path
import refresh_storm
import sweeps

SWEEP_QPS = 100
SWEEP_GRANTS = 3_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    sweep = ["--qps", str(SWEEP_QPS)]
    if quick:
        runs = [
            ("P1/P4 hot path", hot_path.main, ["--seconds", "3", "--rounds", "1"]),
            ("P2 refresh storm", refresh_storm.main, ["--grants", "10", "--reads", "100"]),
            ("P3 sweeps", sweeps.main, [*sweep, "--grants", "2000", "--small", "1000"]),
        ]
    else:
        runs = [
            ("P1/P4 hot path", hot_path.main, []),
            ("P2 refresh storm", refresh_storm.main, []),
            ("P3 sweeps", sweeps.main, [*sweep, "--sweep", str(SWEEP_GRANTS)]),
        ]
    for title, run, argv in runs:
        print(f"\n=== {title}: {' '.join(argv) or '(defaults)'}", flush=True)
        started = time.monotonic()
        run(argv)
        print(f"=== {title} took {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()

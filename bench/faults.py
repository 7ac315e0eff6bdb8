"""The fault table: inject each fault into a small real run and say what survived.

    PYTHONPATH=. .venv/bin/python bench/faults.py [--out docs/fault_table.md] [-k EXPR]

Runs the fault suite (tests/reliability: a tiny model, vLLM rollout actors, reward workers, a
DeepSpeed learner, Redis, all on one private Ray node) with ``AURORA_FAULT_TABLE`` set, so every
fault test writes one row: the fault, whether the run survived it (the test passed: the job went
on and every record was counted end to end), records lost, records learned twice, records dropped
and counted (abandoned groups, skipped steps, refused input, a retried publish scored once), and
the recovery time (from the fault to the end of the step it interrupted). Each figure is counted
from what the run did (the streams read back from Redis, the components' counters), before the
test's asserts; one a test does not count is "-". The faults of a running GRPO job are run at
both policy lag bounds (``k``: ``learner.max_policy_lag`` 1, the suite's, then 0). Prints the rows
as a Markdown table; docs/RELIABILITY.md holds the last one. Takes 12-25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = [
    "tests/reliability",
    # fault tests kept beside the component they test; they fill their rows the same way
    "tests/rewards/test_reward_worker.py::test_killed_worker_messages_are_reclaimed_nothing_lost_or_doubled",
    "tests/rewards/test_reward_worker.py::test_slow_consumer_finishing_after_a_reclaim_adds_nothing",
    "tests/rewards/test_stream_scorer.py::test_scorer_rides_out_a_redis_crash_and_restart[aof]",
]
# the modules whose faults hit a running job: run again at the other lag bound (AURORA_FAULT_LAG)
JOB_FAULTS = ["tests/reliability/test_grpo_faults.py", "tests/reliability/test_learner_faults.py"]
OTHER_LAG = "0"
COLUMNS = ("fault", "k", "survived", "lost", "duplicated", "dropped (counted)", "recovery s")


def table(rows: list[dict]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "**NO**"
        return str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        values = (r["fault"], r.get("k"), r["survived"], r["lost"], r["duplicated"], r["dropped"], r["recovery_s"])
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("-k", dest="select", help="only the fault tests matching this pytest -k expression")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "faults.jsonl"
        env = {**os.environ, "AURORA_FAULT_TABLE": str(rows_file), "PYTHONPATH": str(ROOT)}
        returncode = 0
        for paths, lag in ((SUITE, {}), (JOB_FAULTS, {"AURORA_FAULT_LAG": OTHER_LAG})):
            cmd = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider"]
            if args.select:
                cmd += ["-k", args.select]
            rc = subprocess.run(cmd, cwd=ROOT, env={**env, **lag}).returncode
            returncode = max(returncode, 0 if rc == 5 else rc)  # 5: -k left none of these paths
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    if not rows:
        print("no fault test ran", file=sys.stderr)
        return 1
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return returncode


if __name__ == "__main__":
    sys.exit(main())

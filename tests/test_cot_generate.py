"""``aurora-rl cot generate``: a teacher checkpoint served with vLLM writes a validated CoT JSONL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import save_policy
from aurora_rl.prompts.cot_source import load_cot
from tests.model.tiny_policy import make_policy, tiny_model_config


def test_teacher_writes_cot_and_every_written_entry_is_valid(tmp_path, synthetic_root, ray_node):
    policy, tok = make_policy()
    teacher = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "teacher")
    out = tmp_path / "cot.jsonl"
    env = {**os.environ, **ray_node.client_env()}
    run = subprocess.run(
        [sys.executable, "-m", "aurora_rl.cli", "cot", "generate", "--teacher", str(teacher), "--data",
         str(synthetic_root), "--split", "val", "--out", str(out), "--max-samples", "4", "--max-tokens", "20"],
        capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CoT: " in run.stdout and "accepted" in run.stdout
    # the console shows the job; vLLM's lines are in the workers' log files beside the output
    console = (run.stdout + run.stderr).splitlines()
    assert [line for line in console if " INFO " in line or "pid=" in line] == []
    assert "INFO" in (tmp_path / "logs" / "cot-worker0.log").read_text(errors="replace")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # a random teacher rarely writes a well-formed answer: whatever it wrote must pass validation again
    assert all(isinstance(x["row"], int) for x in lines)  # each entry names its metadata row
    entries, report = load_cot("jsonl", [(x["uid"], x["row"]) for x in lines], path=str(out), max_tokens=20)
    assert len(entries) == len(lines) and sum(report.rejected.values()) == 0

"""Library output goes to the run folder's files; the console keeps the job's lines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from aurora_rl.services.library_logs import logs_line, worker_log
from learner.train_log import MetricsTail, progress_line

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_sends_python_logging_native_writes_and_prints_to_its_file(tmp_path):
    path = worker_log(tmp_path / "run", "rollout-0")
    code = (f"import logging, os, sys\nfrom aurora_rl.services.library_logs import capture_output\n"
            f"capture_output({str(path)!r})\nprint('a print')\nos.write(2, b'a native write\\n')\n"
            "logging.getLogger('vllm').warning('an engine warning')\nsys.stderr.write('a stderr write\\n')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""  # nothing reached the console
    text = path.read_text()
    assert path == tmp_path / "run" / "logs" / "rollout-0.log"
    for line in ("a print", "a native write", "an engine warning", "a stderr write"):
        assert line in text


def test_the_warnings_of_a_folder_in_one_line(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    assert logs_line(logs, "sft") == f"[sft] library logs in {logs}: no warnings"
    (logs / "a.log").write_text("INFO all fine\nWARNING 12-05 [cpu_worker.py:114] libtcmalloc is not found\n")
    (logs / "b.log").write_text("UserWarning: something\nWARN deprecated\nplain line\n")
    line = logs_line(logs, "sft")
    assert line.startswith(f"[sft] library logs in {logs}: 3 warnings (first: WARNING 12-05 [cpu_worker.py:114]")
    assert "\n" not in line


def test_the_driver_prints_the_progress_the_workers_write(tmp_path, capsys):
    """Ray Train's SFT ranks write metrics.jsonl; the driver shows their progress lines."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "time": 0.0, "loss": 9.0}) + "\n")  # a resumed run's old row
    rows = [{"step": s, "time": time.time(), "ce": 2.5 / s, "samples_per_s": 8.0, "total_steps": 4, "eta_s": 4.0 - s}
            for s in (2, 3, 4)]
    with MetricsTail(path, "sft", poll_s=0.05):
        with path.open("a") as f:
            f.write(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n")
            f.flush()
            time.sleep(0.3)
            f.write(json.dumps(rows[2])[:10])  # a row cut short while written: read once whole
            f.flush()
            time.sleep(0.2)
            f.write(json.dumps(rows[2])[10:] + "\n")
    out = capsys.readouterr().out.splitlines()
    assert out == [progress_line("sft", r) for r in rows]
    assert out[1] == "[sft] step 3/4 (75%) ce 0.8333 | 8.00 samples/s | ETA 0m01s"


def test_the_driver_draws_no_progress_bar_and_imports_no_library_to_say_so():
    code = ("import sys\nfrom aurora_rl.services.library_logs import quiet_driver\nquiet_driver()\n"
            "assert 'transformers' not in sys.modules  # `config show` stays instant\n"
            "import tempfile\nfrom transformers import Qwen2Config, Qwen2ForCausalLM\n"
            "cfg = Qwen2Config(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,"
            " num_key_value_heads=1, vocab_size=100)\n"
            "Qwen2ForCausalLM(cfg).save_pretrained(tempfile.mkdtemp())\nprint('saved')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "saved" and "Writing model shards" not in run.stderr

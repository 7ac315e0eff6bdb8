"""Checkpoints complete or absent (learner/checkpoints.py), on real files: a write that fails
half-way (the disk full, through RLIMIT_FSIZE in a process of its own) leaves the previous
checkpoint, ``latest`` and the final export as they were; resume takes the newest complete
checkpoint and names what it skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner import checkpoints

ROOT = Path(__file__).resolve().parents[2]


def write_step(run: Path, step: int, payload: bytes = b"w" * 4096) -> Path:
    partial = checkpoints.partial_folder(run / "checkpoints", f"step_{step:06d}")
    (partial / "state").mkdir()
    (partial / "state" / "mp_rank_00_model_states.pt").write_bytes(payload)
    (partial / "job_state.json").write_text(f'{{"step": {step}}}')
    return checkpoints.commit(partial, f"step_{step:06d}")


def test_a_committed_checkpoint_is_whole_and_latest_names_it(tmp_path):
    folder = write_step(tmp_path, 2)
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"
    assert checkpoints.problems(folder) == []
    assert not list((tmp_path / "checkpoints").glob(".*"))  # nothing partial or temporary left
    again = write_step(tmp_path, 2, b"v" * 10)  # a step redone after a learner restart replaces it
    assert (again / "state" / "mp_rank_00_model_states.pt").read_bytes() == b"v" * 10 and not checkpoints.problems(again)


@pytest.mark.parametrize("damage, why", [
    (lambda f: (f / "state" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 100), "has 100 bytes, the manifest says 4096"),
    (lambda f: (f / "state" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 4096), "does not match its SHA-256"),
    (lambda f: (f / "job_state.json").unlink(), "job_state.json is missing"),
    (lambda f: (f / "manifest.json").write_text(""), "manifest.json is unreadable"),
])
def test_resume_skips_a_damaged_checkpoint_naming_why_and_takes_the_newest_whole_one(tmp_path, damage, why):
    write_step(tmp_path, 2)
    damage(write_step(tmp_path, 4))
    lines = []
    assert checkpoints.newest_complete(tmp_path / "checkpoints", lines.append) == tmp_path / "checkpoints" / "step_000002"
    assert len(lines) == 1 and f"skipping {tmp_path / 'checkpoints' / 'step_000004'}" in lines[0] and why in lines[0]


def test_an_empty_latest_or_a_partial_folder_is_not_taken_for_a_checkpoint(tmp_path):
    write_step(tmp_path, 2)
    (tmp_path / "checkpoints" / "latest").write_text("")
    checkpoints.partial_folder(tmp_path / "checkpoints", "step_000004")  # a save killed half-way
    lines = []
    assert checkpoints.newest_complete(tmp_path / "checkpoints", lines.append).name == "step_000002"
    assert lines == [f"[checkpoint] {tmp_path / 'checkpoints' / 'latest'} names nothing, no checkpoint folder: "
                     "looking for the newest complete one"]
    assert checkpoints.newest_complete(tmp_path / "nothing", lines.append) is None


# Runs in a process whose files may not grow beyond 64 KiB (the disk full), SIGXFSZ ignored so
# that the write fails with EFBIG instead of killing it.
DISK_FULL = """
import resource, signal, sys
from pathlib import Path
from learner import checkpoints
run, what = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    if what == "checkpoint":
        partial = checkpoints.partial_folder(run / "checkpoints", "step_000004")
        (partial / "mp_rank_00_model_states.pt").write_bytes(b"w" * 200_000)
        checkpoints.commit(partial, "step_000004")
    else:
        checkpoints.replace_tree(run / "checkpoint", lambda new: (new.mkdir(), (new / "model.safetensors").write_bytes(b"n" * 200_000)))
except OSError as e:
    print("failed:", e.strerror)
    sys.exit(3)
"""


@pytest.mark.parametrize("what", ["checkpoint", "final export"])
def test_a_disk_that_fills_during_a_write_leaves_the_previous_one_in_place(tmp_path, what):
    write_step(tmp_path, 2)
    checkpoints.replace_tree(tmp_path / "checkpoint", lambda new: (new.mkdir(), (new / "model.safetensors").write_bytes(b"o")))
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path), what.split()[0]], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 3 and "failed: File too large" in proc.stdout, proc.stderr[-2000:]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"
    assert checkpoints.newest_complete(tmp_path / "checkpoints", print).name == "step_000002"
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == b"o"


def test_the_final_export_is_swapped_whole_and_the_old_one_removed(tmp_path):
    dest = tmp_path / "checkpoint"
    dest.mkdir()
    (dest / "aurora_model.json").write_text("old, a plain folder from before")
    checkpoints.replace_tree(dest, lambda new: (new.mkdir(), (new / "aurora_model.json").write_text("new")))
    assert (dest / "aurora_model.json").read_text() == "new" and dest.is_symlink()
    checkpoints.replace_tree(dest, lambda new: (new.mkdir(), (new / "aurora_model.json").write_text("newer")))
    assert (dest / "aurora_model.json").read_text() == "newer"
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint", dest.resolve().name}  # the old ones gone


def test_a_run_folder_others_can_write_is_not_resumed_from(tmp_path):
    write_step(tmp_path, 2)
    (tmp_path / "checkpoints").chmod(0o777)
    with pytest.raises(PermissionError, match=r"checkpoints is writable by every user \(mode 777\): refusing"):
        checkpoints.refuse_foreign_folder(tmp_path)
    (tmp_path / "checkpoints").chmod(0o755)
    checkpoints.refuse_foreign_folder(tmp_path)  # the user's own, writable by the user only: fine
    if os.getuid() == 0:  # another user's folder (only root can make one here)
        os.chown(tmp_path / "checkpoints", 12345, -1)
        with pytest.raises(PermissionError, match="belongs to user id 12345"):
            checkpoints.refuse_foreign_folder(tmp_path)

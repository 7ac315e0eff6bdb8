"""Where setup takes the pinned CPU torch from (scripts/torch_source.sh): a local wheel folder,
else PyTorch's CPU index, else one error naming the wheel and both places.

A stand-in wheel (the real one's name and metadata, no code) plays the local folder and a
local HTTP index plays PyTorch's; pip's own configuration is left out.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from aurora_rl.services.process import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = next(line for line in (ROOT / "requirements" / "cpu.txt").read_text().splitlines()
            if line.startswith("torch=="))
VERSION = SPEC.split("==")[1]


def stand_in_wheel(folder: Path) -> Path:
    """A wheel named and described as the pinned torch (metadata is all a dry run reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"torch-{VERSION}.dist-info"
    path = folder / f"torch-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("torch/__init__.py", "")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {VERSION}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    return path


def torch_source(find_links: Path, index: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": str(find_links),
           "AURORA_TORCH_INDEX": index}
    env.pop("PIP_EXTRA_INDEX_URL", None)
    return subprocess.run(["bash", "scripts/torch_source.sh", sys.executable, "requirements/cpu.txt"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port('127.0.0.1')}/simple"  # nothing listens there


@pytest.fixture()
def served_index(tmp_path):
    """A PEP 503 index holding the stand-in wheel, on loopback."""
    wheel = stand_in_wheel(tmp_path / "index" / "simple" / "torch")
    (wheel.parent / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "index"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()


def test_a_local_wheel_folder_is_used_first(tmp_path):
    stand_in_wheel(tmp_path / "wheels")
    run = torch_source(tmp_path / "wheels", unreachable())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""  # pip's find-links already holds it: no index to add


def test_without_a_local_wheel_the_pytorch_cpu_index_is_added(tmp_path, served_index):
    (tmp_path / "empty").mkdir()
    run = torch_source(tmp_path / "empty", served_index)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"--extra-index-url {served_index}"


def test_with_neither_reachable_one_error_names_the_wheel_and_both_places(tmp_path):
    (tmp_path / "empty").mkdir()
    index = unreachable()
    run = torch_source(tmp_path / "empty", index)
    assert run.returncode == 1
    error = run.stderr.strip()
    assert len(error.splitlines()) == 1
    assert SPEC in error and str(tmp_path / "empty") in error and index in error


def test_the_default_index_is_pytorchs_cpu_index_and_setup_uses_the_script():
    assert "https://download.pytorch.org/whl/cpu" in (ROOT / "scripts" / "torch_source.sh").read_text()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "scripts/torch_source.sh" in setup

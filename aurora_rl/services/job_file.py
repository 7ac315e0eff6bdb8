"""``<run>/job.json``: how ``aurora-rl status`` / ``scale`` reach a running GRPO job, without its secret.

Run folders are shared (``cluster.yaml`` puts them on NFS) and readable by others, so job.json
names the job's Redis without its password. The full URL goes to a file of the user's own:
``<secrets>/<run key>.url``, where ``<secrets>`` is ``$AURORA_RL_SECRETS`` or
``~/.config/aurora_rl/secrets`` (the folder 0700, the file 0600) and the run key is a hash of the
run folder's path. ``status`` and ``scale`` read it back for the same run folder, on the machine
the driver runs on (the head) or any machine that shares that home folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aurora_rl.services.files import write_whole

JOB_FILE = "job.json"


def secrets_dir() -> Path:
    return Path(os.environ.get("AURORA_RL_SECRETS") or Path.home() / ".config" / "aurora_rl" / "secrets")


def with_login(url: str, user: str | None, password: str | None) -> str:
    """``url`` logging in as ``user`` with ``password`` (either None: left out; both as they are
    written in a URL); the host, port and database kept."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""  # IPv6 in brackets
    if parts.port:
        host = f"{host}:{parts.port}"
    login = (user or "") + (f":{password}" if password is not None else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{host}" if login else host))


def without_password(url: str) -> str:
    """The URL with its password removed (the user, host, port and database kept)."""
    parts = urlsplit(url)
    return url if parts.password is None else with_login(url, parts.username, None)


def secret_path(run_dir: str | Path) -> Path:
    key = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:24]
    return secrets_dir() / f"{key}.url"


def write_job_file(run_dir: str | Path, redis_url: str, **fields) -> Path:
    """job.json (no password in it) and, when the URL has a password, the private file beside
    the user's other secrets; both replaced whole (written aside, then renamed)."""
    run_dir = Path(run_dir)
    if urlsplit(redis_url).password is not None:
        secret = secret_path(run_dir)
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(secret.parent, 0o700)
        write_whole(secret, redis_url, mode=0o600)
    path = run_dir / JOB_FILE
    write_whole(path, json.dumps({"redis_url": without_password(redis_url), **fields}))
    return path


def read_job_file(run_dir: str | Path) -> dict:
    """The job's fields with its full Redis URL (from the private file where there is one)."""
    path = Path(run_dir) / JOB_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no GRPO job has started in this run folder")
    job = json.loads(path.read_text())
    secret = secret_path(run_dir)
    if secret.exists():
        job["redis_url"] = secret.read_text().strip()
    job["secret_file"] = str(secret)
    return job

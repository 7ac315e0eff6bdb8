"""``aurora-rl status`` and ``scale``: a run whose Redis no longer answers still shows its metrics;
the run folder holds no password (it is shared), and both commands still reach the job's Redis."""

from __future__ import annotations

import json
import socket

from aurora_rl.cli import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_of_an_ended_job_shows_its_last_step_without_the_redis_password(tmp_path, capsys):
    port = closed_port()
    job = {"redis_url": f"redis://:s3cret-token@127.0.0.1:{port}/0", "rollout_stream": "aurora:rollouts:x",
           "scored_stream": "aurora:scored:x", "placement": "cpu",
           "workers": {"rollout": {"rollout-0": "node0abcdef", "rollout-1": "node0abcdef"},
                       "reward": ["node0abcdef"] * 2, "learner": ["node0abcdef"] * 2}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    rows = [{"step": 1, "reward": 2.5, "version": 1.0, "rollout_actors": 2.0},
            {"step": 2, "reward": 2.75, "reward_iou": 0.5, "group_reward_std": 0.4, "groups_flat": 0.25,
             "groups_small_spread": 0.5, "version": 2.0, "rollout_actors": 2.0, "learned": 48.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert main(["status", "--run", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "step 2  policy version 2  rollout actors 2" in out
    assert "reward 2.750 (iou 0.500)  group std 0.400  groups flat 0.25 small spread 0.50" in out
    assert f"streams: unavailable (Redis at 127.0.0.1:{port} does not answer" in out
    assert "learned 48" in out and "rollout 2 on node node0abc x2" in out
    assert "s3cret-token" not in out


def test_status_of_a_folder_without_a_job_names_the_file(tmp_path, capsys):
    assert main(["status", "--run", str(tmp_path)]) == 1
    assert f"{tmp_path / 'job.json'}: no GRPO job has started" in capsys.readouterr().err


def test_the_run_folder_holds_no_password_and_status_and_scale_still_reach_the_job(redis_server, tmp_path,
                                                                                   monkeypatch, capsys):
    import os
    import stat
    import uuid

    from aurora_rl.services.job_file import secret_path, write_job_file

    monkeypatch.setenv("AURORA_RL_SECRETS", str(tmp_path / "home" / "secrets"))
    run = tmp_path / "shared" / "run"
    run.mkdir(parents=True)
    tag = uuid.uuid4().hex[:8]
    client = redis_server.client()
    client.xadd(f"test:rollouts:{tag}", {"r": b"x"})
    write_job_file(run, redis_server.url, rollout_stream=f"test:rollouts:{tag}", scored_stream=f"test:scored:{tag}",
                   scale_key=f"test:scale:{tag}", placement="cpu",
                   workers={"rollout": {"rollout-0": "node0abcdef"}, "reward": ["node0abcdef"], "learner": ["node0abcdef"]})
    password = redis_server.password
    shared = [p for p in run.rglob("*") if p.is_file()]
    assert shared == [run / "job.json"] and all(password not in p.read_text() for p in shared)
    assert json.loads((run / "job.json").read_text())["redis_url"] == redis_server.url.replace(f":{password}@", "")
    secret = secret_path(run)
    assert secret.read_text() == redis_server.url and not secret.is_relative_to(run)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700

    assert main(["status", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "streams {'rollout_stream': 1, 'scored_stream': 0}" in out and password not in out
    assert main(["scale", "--run", str(run), "--rollout", "3"]) == 0
    assert client.get(f"test:scale:{tag}") == b"3"

    os.remove(secret)  # another machine, without the driver's secrets: the commands say where the password is
    assert main(["status", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"its password is read from {secret}" in out and password not in out
    assert main(["scale", "--run", str(run), "--rollout", "2"]) == 1
    assert f"its password is read from {secret}" in capsys.readouterr().err

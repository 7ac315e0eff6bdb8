"""CoT from a teacher behind an OpenAI-compatible endpoint: a real vLLM OpenAI server process on the
CPU (the session's ``teacher_endpoint``: a tiny random BLIP-2, one image per prompt), with guided
decoding (xgrammar) so that even random weights answer in the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aurora_rl.cot_endpoint import (
    Endpoint,
    EndpointTeacher,
    answer_of,
    failed_path,
    generate_endpoint_cot,
    request_body,
)
from aurora_rl.data import refavs_layout as layout
from aurora_rl.prompts.answer_format import parse_answer
from tests.conftest import free_port
from tests.data.layout_fixtures import write_refavs_fixture

SECRET = "sk-never-written-anywhere"


@pytest.fixture(scope="module")
def served(teacher_endpoint, tmp_path_factory):
    """(base URL, dataset root)."""
    return teacher_endpoint, write_refavs_fixture(tmp_path_factory.mktemp("cot") / "refavs")


def train_rows(root):
    return [r for r in layout.read_metadata(root) if r.split == "train"]


def test_the_cli_writes_checked_cot_from_a_served_teacher_and_resumes(served, tmp_path):
    url, root = served
    out = tmp_path / "cot.jsonl"
    command = [sys.executable, "-m", "aurora_rl.cli", "cot", "generate", "--endpoint", url, "--model", "teacher",
               "--data", str(root), "--split", "train", "--out", str(out), "--frames", "1", "--answer-tokens", "800"]
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    first = subprocess.run(command + ["--max-samples", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "rows/s" in first.stdout and "ETA" in first.stdout and "CoT: 1/1 accepted" in first.stdout
    with out.open("a") as f:
        f.write('{"uid": "-1HyqEM_VwM_137000_147000_car_1", "ro')  # a crash in the middle of a line

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming: 1 of 2 rows already answered" in second.stdout and "CoT: 1/1 accepted" in second.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]  # the torn line is gone
    rows = {r.line: r for r in train_rows(root)}
    assert sorted(e["row"] for e in lines) == sorted(rows)
    for e in lines:
        parsed = parse_answer(e["cot"])
        assert parsed.well_formed and parsed.target_class == layout.uid_class(rows[e["row"]].uid) == e["uid"].split("_")[-2]
    assert not failed_path(out).exists() or not failed_path(out).read_text().strip()
    for text in (first.stdout, first.stderr, second.stdout, second.stderr, out.read_text()):
        assert SECRET not in text


def test_a_null_row_gets_nothing_as_its_target(served, tmp_path):
    url, root = served
    null = [r for r in layout.read_metadata(root) if r.split == "test_n"]
    teacher = EndpointTeacher(url, "teacher", frames=1, max_tokens=800)
    report = generate_endpoint_cot(teacher, root, null, tmp_path / "null.jsonl", log=lambda _: None)
    assert report.accepted == 1
    entry = json.loads((tmp_path / "null.jsonl").read_text())
    assert parse_answer(entry["cot"]).target_class == "nothing"


@pytest.mark.parametrize("structured, budget, reason", [
    (True, 6, "malformed: not JSON"),  # the JSON is cut by the token budget
    (False, 40, "malformed: reasoning steps found none"),  # free text from random weights
])
def test_malformed_answers_are_asked_again_then_counted_as_failures(served, tmp_path, structured, budget, reason):
    url, root = served
    teacher = EndpointTeacher(url, "teacher", frames=1, structured=structured, max_tokens=budget, retries=1)
    out = tmp_path / "cot.jsonl"
    lines = []
    report = generate_endpoint_cot(teacher, root, train_rows(root), out, log=lines.append)
    assert report.accepted == 0 and sum(report.rejected.values()) == 2
    assert all(r.startswith(reason) for r in report.rejected)
    failures = [json.loads(line) for line in failed_path(out).read_text().splitlines()]
    assert [f["attempts"] for f in failures] == [2, 2] and all(f["reason"].startswith(reason) for f in failures)
    assert out.read_text() == "" and "failed 2" in lines[-1]


def test_the_request_carries_frames_audio_expression_and_class(tmp_path, monkeypatch):
    root = write_refavs_fixture(tmp_path / "refavs")
    row = train_rows(root)[0]
    body = request_body(EndpointTeacher("http://x/v1", "m", frames=4, send_audio=True), root, row, attempt=1)
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text"] + ["image_url"] * 4 + ["input_audio"]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts[1:5])
    assert row.exp in parts[0]["text"] and "piano" in parts[0]["text"] and body["seed"] == 1
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["target"] == {"type": "string", "enum": ["piano"]}
    text_body = request_body(EndpointTeacher("http://x/v1", "m", frames=1, structured=False), root, row, 0)
    assert "response_format" not in text_body and "step 4 : the target is piano" in text_body["messages"][0]["content"][0]["text"]

    monkeypatch.setenv("TEACHER_KEY", SECRET)
    assert Endpoint(EndpointTeacher("http://x/v1", "m", api_key_env="TEACHER_KEY")).headers["Authorization"] == \
        f"Bearer {SECRET}"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "Authorization" not in Endpoint(EndpointTeacher("http://x/v1", "m")).headers


def test_an_answer_naming_another_class_is_rejected(tmp_path):
    root = write_refavs_fixture(tmp_path / "refavs")
    row = train_rows(root)[0]  # piano
    good = json.dumps({"images": "a man plays", "audio": "piano notes", "reference": "the played one", "target": "piano"})
    wrong = json.dumps({"images": "a man plays", "audio": "piano notes", "reference": "the played one", "target": "car"})
    assert parse_answer(answer_of(good, row, True)[0]).target_class == "piano"
    assert answer_of(wrong, row, True) == (None, "class: the answer names 'car', the row's is 'piano'")
    assert answer_of('{"images": "x"}', row, True)[1].startswith("malformed: needs the text keys")
    text = "step 1 : a man . step 2 : notes . step 3 : played . step 4 : the target is piano . it is [SEG] ."
    assert answer_of(text, row, False)[0] is not None


def test_an_unreachable_endpoint_stops_the_run_with_its_address(tmp_path):
    from aurora_rl.cot_endpoint import EndpointError

    root = write_refavs_fixture(tmp_path / "refavs")
    teacher = EndpointTeacher(f"http://127.0.0.1:{free_port()}/v1", "m", frames=1, retries=0, timeout_s=2)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1.*rerun the same command to resume"):
        generate_endpoint_cot(teacher, root, train_rows(root), tmp_path / "cot.jsonl", log=lambda _: None)

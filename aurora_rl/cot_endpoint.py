"""Chain-of-thought from a teacher served behind an OpenAI-compatible endpoint (``vllm serve``,
or any server with ``/v1/chat/completions``).

What the teacher is sent, per metadata row (one user message):
- ``frames`` of the clip's 10, evenly spaced, as images (``image_url`` data URLs of the files as
  they are on disk), in time order;
- the soundtrack as ``input_audio`` (WAV) when ``send_audio`` (only for models that take audio);
- the referring expression and the class of the object it refers to (the class part of the uid;
  a row of the null split refers to nothing), with the four steps to write.

What it must answer: with ``structured`` (the default), a JSON object
``{"images", "audio", "reference", "target"}`` under ``response_format: json_schema``, whose
``target`` is constrained to the row's class, so a server with guided decoding cannot answer
otherwise; without it, the project's own text form (``step 1 : ... it is [SEG] .``). Either way
the answer is checked like every CoT source (four steps, one [SEG], length) and its class against
the row's. A malformed answer is asked again up to ``retries`` times, then counted as a failure
with its reason.

Output is resumable: each accepted entry is appended to the CoT JSONL (``{"uid", "row", "cot"}``)
and each failure to ``<out>.failed.jsonl`` as it completes, flushed and synced; a rerun skips the
rows found in either (a torn last line left by a crash is cut off first). The API key, if the
server wants one, is read from the environment variable ``api_key_env`` and never written anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.media_io import evenly_spaced
from aurora_rl.prompts.answer_format import NULL_CLASS, CoTEntry, compose_answer, normalize, parse_answer
from aurora_rl.prompts.cot_source import CoTReport, entry_problem

STEP_KEYS = ("images", "audio", "reference", "target")
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class EndpointError(RuntimeError):
    """The endpoint cannot be reached or keeps failing: the run stops (and resumes when rerun)."""


@dataclass
class EndpointTeacher:
    """
    Attributes:
        url: the server's base URL including ``/v1`` (e.g. ``http://10.0.0.5:8000/v1``).
        model: the served model's name (``vllm serve``'s ``--served-model-name`` or its path).
        frames: frames sent per clip (1-10).
        send_audio: also send the WAV (the model must take audio).
        structured: ask for the JSON answer under ``response_format`` (guided decoding on vLLM).
        retries: re-asks after a malformed answer (and after a server error) before giving up.
        max_tokens: the teacher's answer budget (tokens); ``max_words`` bounds the composed CoT.
        temperature: sampling temperature (re-asks use the same, with another seed).
        concurrency: requests in flight (the server batches them).
        timeout_s: one request's limit.
        api_key_env: environment variable holding the API key (unset: no key sent).
    """

    url: str
    model: str
    frames: int = 4
    send_audio: bool = False
    structured: bool = True
    retries: int = 2
    max_tokens: int = 400
    max_words: int = 150
    temperature: float = 0.2
    concurrency: int = 4
    timeout_s: float = 120.0
    api_key_env: Optional[str] = "OPENAI_API_KEY"


def row_class(row: layout.RefAVSRow) -> Optional[str]:
    """The class a row refers to (None: a null row)."""
    return None if row.split == layout.NULL_SPLIT else layout.uid_class(row.uid)


def answer_schema(target: str) -> dict:
    # Printable text on one line, no brackets (the answer's own "[SEG]" is added by compose_answer).
    # No length bound: xgrammar refuses a pattern with maxLength, and a long repetition bound
    # breaks its compiler; max_tokens bounds the answer, and the CoT's word count is checked.
    text = {"type": "string", "pattern": "^[^\\x00-\\x1f\\[\\]]+$"}
    return {
        "type": "object",
        "properties": {"images": text, "audio": text, "reference": text,
                       "target": {"type": "string", "enum": [target]}},
        "required": list(STEP_KEYS),
        "additionalProperties": False,
    }


def instruction(expression: str, target: Optional[str], structured: bool, with_audio: bool) -> str:
    heard = "and its soundtrack " if with_audio else ""
    refers = (f"The expression refers to the {target} in the clip." if target else
              "The expression refers to nothing in the clip (no object matches it).")
    steps = ("Write four short steps: what the images show; what is heard; how the expression picks out its "
             "object; the target's class.")
    if structured:
        form = (f'Answer with a JSON object with the keys "images", "audio", "reference" and "target" (the class: '
                f'"{target or NULL_CLASS}").')
    else:
        form = (f"Answer exactly in this form: step 1 : <images> step 2 : <audio> step 3 : <reference> "
                f"step 4 : the target is {target or NULL_CLASS} . it is [SEG] .")
    return (f"These are frames of a 10-second video {heard}in time order. Referring expression: \"{expression}\". "
            f"{refers} {steps} {form}")


def data_url(path: Path) -> str:
    return f"data:{MIME.get(path.suffix.lower(), 'application/octet-stream')};base64," + \
        base64.b64encode(path.read_bytes()).decode()


def request_body(teacher: EndpointTeacher, root: Path, row: layout.RefAVSRow, attempt: int) -> dict:
    """The chat-completions request for one row (``attempt`` seeds a re-ask differently)."""
    target = row_class(row)
    text = instruction(row.exp, target, teacher.structured, teacher.send_audio)
    content: list[dict] = [{"type": "text", "text": text}]
    for i in evenly_spaced(layout.NUM_FRAMES, teacher.frames):
        content.append({"type": "image_url", "image_url": {"url": data_url(layout.frame_path(root, row.vid, i))}})
    if teacher.send_audio:
        wav = base64.b64encode(layout.audio_path(root, row.vid).read_bytes()).decode()
        content.append({"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}})
    body = {"model": teacher.model, "messages": [{"role": "user", "content": content}],
            "max_tokens": teacher.max_tokens, "temperature": teacher.temperature, "seed": attempt}
    if teacher.structured:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "cot", "strict": True, "schema": answer_schema(target or NULL_CLASS)}}
    return body


def answer_of(reply: str, row: layout.RefAVSRow, structured: bool) -> tuple[Optional[str], str]:
    """(the four-step CoT, "") from a reply, or (None, what is wrong with it)."""
    target = row_class(row)
    if structured:
        try:
            obj = json.loads(reply)
        except json.JSONDecodeError as e:
            return None, f"malformed: not JSON ({e.msg})"
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k].strip() for k in STEP_KEYS):
            return None, "malformed: needs the text keys " + ", ".join(STEP_KEYS)
        said = normalize(obj["target"])
        answer = compose_answer(obj["images"], obj["audio"], obj["reference"], None if said == NULL_CLASS else said)
    else:
        answer = normalize(reply)
    parsed = parse_answer(answer)
    if parsed.problems:
        return None, "malformed: " + "; ".join(parsed.problems)
    if parsed.target_class != (target or NULL_CLASS):
        return None, f"class: the answer names {parsed.target_class!r}, the row's is {target or NULL_CLASS!r}"
    return answer, ""


class Endpoint:
    """POSTs to ``<url>/chat/completions``; server errors and lost connections are retried."""

    def __init__(self, teacher: EndpointTeacher):
        self.teacher = teacher
        self.headers = {"Content-Type": "application/json"}
        key = os.environ.get(teacher.api_key_env) if teacher.api_key_env else None
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    def chat(self, body: dict) -> tuple[Optional[str], str]:
        """(the reply's text, "") or (None, why the server refused it: a 4xx is not retried)."""
        url = self.teacher.url.rstrip("/") + "/chat/completions"
        last = ""
        for attempt in range(self.teacher.retries + 1):
            request = urllib.request.Request(url, json.dumps(body).encode(), self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.teacher.timeout_s) as response:
                    reply = json.loads(response.read())
                return reply["choices"][0]["message"].get("content") or "", ""
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:300]
                if e.code < 500:
                    return None, f"refused: HTTP {e.code} {detail}"
                last = f"HTTP {e.code} {detail}"
            except (urllib.error.URLError, OSError, json.JSONDecodeError, KeyError, IndexError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(min(2.0 ** attempt, 10.0))
        raise EndpointError(f"{url}: no answer after {self.teacher.retries + 1} tries ({last}); "
                            "rerun the same command to resume")


def ask_row(endpoint: Endpoint, root: Path, row: layout.RefAVSRow) -> tuple[Optional[str], str, int]:
    """(CoT or None, the last problem, attempts) for one row, re-asking malformed answers."""
    teacher = endpoint.teacher
    problem = ""
    for attempt in range(teacher.retries + 1):
        reply, refused = endpoint.chat(request_body(teacher, root, row, attempt))
        if reply is None:
            return None, refused, attempt + 1
        answer, problem = answer_of(reply, row, teacher.structured)
        if answer is not None:
            return answer, "", attempt + 1
    return None, problem, teacher.retries + 1


def _done_rows(path: Path) -> set[int]:
    """Rows already written to a JSONL; a torn last line (a crash mid-write) is cut off."""
    if not path.exists():
        return set()
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        path.write_bytes(raw)
    rows = set()
    for line in raw.decode().splitlines():
        try:
            rows.add(int(json.loads(line)["row"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return rows


def _append(f, obj: dict) -> None:
    f.write(json.dumps(obj) + "\n")
    f.flush()
    os.fsync(f.fileno())


def failed_path(out: Path) -> Path:
    return out.with_name(out.stem + ".failed.jsonl")


def generate_endpoint_cot(teacher: EndpointTeacher, root: str | Path, rows: list[layout.RefAVSRow], out: str | Path,
                          log: Callable[[str], None] = print, every_s: float = 10.0) -> CoTReport:
    """Ask the teacher for the CoT of ``rows`` not yet in ``out`` (or its failures file).

    Returns the report of this run: accepted, and rejected by reason (failures are also kept
    in ``<out>.failed.jsonl`` with their reasons and attempts).
    """
    root, out = Path(root), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = failed_path(out)
    done = _done_rows(out) | _done_rows(failed)
    todo = [r for r in rows if r.line not in done]
    report = CoTReport()
    if len(todo) < len(rows):
        log(f"[cot] resuming: {len(rows) - len(todo)} of {len(rows)} rows already answered in {out}")
    endpoint = Endpoint(teacher)
    started = last = time.monotonic()
    refused = 0
    with out.open("a") as ok, failed.open("a") as bad, ThreadPoolExecutor(teacher.concurrency) as pool:
        futures = {pool.submit(ask_row, endpoint, root, row): row for row in todo}
        try:
            for n, future in enumerate(as_completed(futures), start=1):
                row = futures[future]
                answer, problem, attempts = future.result()
                if answer:  # well formed and of the row's class (answer_of): the length is left to check
                    problem = entry_problem(CoTEntry(row.uid, answer, row_class(row), row.line), teacher.max_words,
                                            lambda s: len(s.split()))
                if not problem:
                    report.accepted += 1
                    _append(ok, {"uid": row.uid, "row": row.line, "cot": answer})
                else:
                    report.reject(f"{row.uid}@{row.line}", problem)
                    _append(bad, {"uid": row.uid, "row": row.line, "reason": problem, "attempts": attempts})
                    refused += problem.startswith("refused")
                    if refused >= 3 and refused == n:  # every request so far refused: the setup is wrong
                        raise EndpointError(f"{teacher.url} refuses every request ({problem}); the failures are in "
                                            f"{failed}: remove it to ask those rows again")
                now = time.monotonic()
                if now - last >= every_s or n == len(todo):
                    last = now
                    rate = n / max(now - started, 1e-9)
                    log(f"[cot] {n}/{len(todo)} rows | {rate:.2f} rows/s | ETA {(len(todo) - n) / rate:.0f} s | "
                        f"accepted {report.accepted}, failed {sum(report.rejected.values())}")
        except EndpointError:
            for f in futures:
                f.cancel()
            raise
    return report

"""Rollout records: what travels between rollout actors, reward workers and the learner.

One record per sampled completion, encoded with msgpack under a versioned schema. Token ids
and log-probabilities travel as little-endian int32 / float32 bytes (compact, exact); masks
as run-length encodings (``aurora_rl.mask_rle``). ``decode`` checks size, schema version,
every field's type and the consistency of lengths before anything uses the record: a
malformed or oversized record raises ``RecordError`` and is never executed or unpickled
(msgpack has no code objects; ext types are refused).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

import msgpack
import numpy as np

from aurora_rl.mask_rle import rle_check, rle_decode, rle_encode

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class RecordError(ValueError):
    """A record that cannot be used; the message says which field and why."""


@dataclass
class RolloutRecord:
    uid: str  # the dataset sample (Ref-AVS uid)
    group_id: str  # one prompt's G completions share it
    sample_index: int  # 0..group_size-1 within the group
    group_size: int
    policy_version: int  # weights version that sampled it
    prompt_token_ids: np.ndarray  # int32 [P] text tokens of the prompt (media placeholders included)
    completion_token_ids: np.ndarray  # int32 [L]
    sampling_logprobs: np.ndarray  # float32 [L], log p_old of each completion token
    completion_text: str
    masks_rle: Optional[dict] = None  # RLE of the predicted [T, H, W] masks; None: no [SEG] emitted
    rewards: Optional[dict] = None  # reward kind -> value, set by a reward worker
    reward: Optional[float] = None  # the weighted total
    meta: dict = field(default_factory=dict)  # str -> scalar (timings, actor id, ...)

    @property
    def record_id(self) -> str:
        return f"{self.group_id}/{self.sample_index}"

    def masks(self) -> Optional[np.ndarray]:
        return None if self.masks_rle is None else rle_decode(self.masks_rle)

    def with_masks(self, masks: Optional[np.ndarray]) -> "RolloutRecord":
        return dataclasses.replace(self, masks_rle=None if masks is None else rle_encode(masks))


_ARRAYS = {"prompt_token_ids": "<i4", "completion_token_ids": "<i4", "sampling_logprobs": "<f4"}
_STR = ("uid", "group_id", "completion_text")
_INT = ("sample_index", "group_size", "policy_version")


def encode(record: RolloutRecord) -> bytes:
    body = {"schema": SCHEMA_VERSION}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name in _ARRAYS:
            value = np.ascontiguousarray(value, dtype=_ARRAYS[f.name]).tobytes()
        body[f.name] = value
    return msgpack.packb(body, use_bin_type=True)


def _refuse_ext(code, data):
    raise RecordError(f"msgpack extension type {code} is not allowed in records")


def decode(payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> RolloutRecord:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise RecordError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise RecordError(f"record of {len(payload)} bytes exceeds the limit of {max_bytes}")
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except RecordError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for garbage input
        raise RecordError(f"not a msgpack record: {type(e).__name__}: {e}") from None
    if not isinstance(body, dict):
        raise RecordError(f"record must be a map, got {type(body).__name__}")
    if body.get("schema") != SCHEMA_VERSION:
        raise RecordError(f"schema version {body.get('schema')!r} is not supported (expected {SCHEMA_VERSION})")
    known = {f.name for f in dataclasses.fields(RolloutRecord)} | {"schema"}
    unknown = set(body) - known
    if unknown:
        raise RecordError(f"unknown fields {sorted(unknown)}")
    kwargs = {}
    for name in _STR:
        kwargs[name] = _typed(body, name, str)
    for name in _INT:
        kwargs[name] = _typed(body, name, int)
    for name, dtype in _ARRAYS.items():
        raw = _typed(body, name, bytes)
        if len(raw) % 4:
            raise RecordError(f"{name}: byte length {len(raw)} is not a multiple of 4")
        kwargs[name] = np.frombuffer(raw, dtype=dtype).copy()
    if not np.isfinite(kwargs["sampling_logprobs"]).all():
        raise RecordError("sampling_logprobs: not all finite (a NaN or infinite log-probability would poison the loss)")
    if len(kwargs["sampling_logprobs"]) != len(kwargs["completion_token_ids"]):
        raise RecordError(
            f"sampling_logprobs has {len(kwargs['sampling_logprobs'])} values for "
            f"{len(kwargs['completion_token_ids'])} completion tokens"
        )
    if not 0 <= kwargs["sample_index"] < kwargs["group_size"]:
        raise RecordError(f"sample_index {kwargs['sample_index']} outside group of {kwargs['group_size']}")
    kwargs["masks_rle"] = _optional_rle(body.get("masks_rle"))
    rewards = body.get("rewards")
    if rewards is not None and not (
        isinstance(rewards, dict) and all(isinstance(k, str) and _is_number(v) for k, v in rewards.items())
    ):
        raise RecordError("rewards must map names to numbers, all finite")
    kwargs["rewards"] = rewards
    reward = body.get("reward")
    if reward is not None and not _is_number(reward):
        raise RecordError(f"reward must be a number, finite, got {reward!r}")
    kwargs["reward"] = None if reward is None else float(reward)
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError("meta must be a map")
    kwargs["meta"] = meta
    return RolloutRecord(**kwargs)


def _is_number(v) -> bool:
    """A finite int or float (a NaN reward would poison its group's advantages)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _typed(body: dict, name: str, tp: type):
    if name not in body:
        raise RecordError(f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise RecordError(f"{name}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _optional_rle(rle) -> Optional[dict]:
    if rle is None:
        return None
    if not (isinstance(rle, dict) and isinstance(rle.get("shape"), list) and isinstance(rle.get("counts"), list)):
        raise RecordError("masks_rle must be a map with 'shape' and 'counts' lists")
    try:
        rle_check(rle)  # counts only: the masks are expanded where they are used (rewards)
    except (ValueError, TypeError) as e:
        raise RecordError(f"masks_rle: {e}") from None
    return rle

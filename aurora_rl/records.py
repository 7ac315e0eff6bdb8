"""Rollout records: what travels between rollout actors, reward workers and the learner.

One record per sampled completion, encoded with msgpack under a versioned schema. Token ids
and log-probabilities travel as little-endian int32 / float32 bytes (compact, exact); masks
as run-length encodings (``aurora_rl.mask_rle``). ``decode`` checks size, schema version,
every field's type, range and the consistency of lengths before anything uses the record,
against the run's ``RecordLimits`` (its sampling budget, group size and mask shape): a malformed,
oversized or out-of-range record raises ``RecordError`` naming the field, and is never executed
or unpickled (msgpack has no code objects; ext types are refused). No record can make a reader
expand more mask pixels than the run's masks hold.
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
MAX_TOKEN_CHARS = 64  # no tokenizer's token decodes to more characters: the text bound per sampled token
MAX_ID_CHARS = 256  # uid and group id
MAX_META_ITEMS, MAX_META_CHARS = 32, 1024


class RecordError(ValueError):
    """A record that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class RecordLimits:
    """What a record of the run can hold; a record beyond it was not made by the run's sampling.

    ``None`` leaves a bound to ``max_bytes`` alone (tools that read records of any run).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_completion_tokens: Optional[int] = None  # the sampling budget, rollout.sampling.max_new_tokens
    max_group_size: Optional[int] = None  # rollout.sampling.group_size
    mask_shape: Optional[tuple[int, int, int]] = None  # at most (frames, height, width): data.num_frames, mask_size

    @classmethod
    def for_run(cls, max_bytes: int, sampling, data) -> "RecordLimits":
        """The limits of a GRPO run: its queue's record size, sampling config and data config."""
        return cls(max_bytes, sampling.max_new_tokens, sampling.group_size,
                   (data.num_frames, data.mask_size, data.mask_size))


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


def decode(payload: bytes, limits: RecordLimits = RecordLimits()) -> RolloutRecord:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise RecordError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > limits.max_bytes:
        raise RecordError(f"record of {len(payload)} bytes exceeds the limit of {limits.max_bytes}")
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
    _check_ranges(kwargs, limits)
    kwargs["masks_rle"] = _optional_rle(body.get("masks_rle"), limits.mask_shape)
    rewards = body.get("rewards")
    if rewards is not None and not (
        isinstance(rewards, dict) and len(rewards) <= MAX_META_ITEMS
        and all(isinstance(k, str) and _is_number(v) for k, v in rewards.items())
    ):
        raise RecordError("rewards must map names to numbers, all finite")
    kwargs["rewards"] = rewards
    reward = body.get("reward")
    if reward is not None and not _is_number(reward):
        raise RecordError(f"reward must be a number, finite, got {reward!r}")
    kwargs["reward"] = None if reward is None else float(reward)
    kwargs["meta"] = _checked_meta(body.get("meta", {}))
    return RolloutRecord(**kwargs)


def _check_ranges(kwargs: dict, limits: RecordLimits) -> None:
    """Every scalar and length within what the run's sampling can produce."""
    for name in ("uid", "group_id"):
        if not 0 < len(kwargs[name]) <= MAX_ID_CHARS:
            raise RecordError(f"{name}: {len(kwargs[name])} characters, expected 1 to {MAX_ID_CHARS}")
    size, index, version = kwargs["group_size"], kwargs["sample_index"], kwargs["policy_version"]
    if size < 1 or (limits.max_group_size is not None and size > limits.max_group_size):
        raise RecordError(f"group_size {size} outside 1..{limits.max_group_size or 'any'} (rollout.sampling.group_size)")
    if not 0 <= index < size:
        raise RecordError(f"sample_index {index} outside group of {size}")
    if version < 0:
        raise RecordError(f"policy_version {version} is negative")
    tokens, logprobs = kwargs["completion_token_ids"], kwargs["sampling_logprobs"]
    budget = limits.max_completion_tokens
    if budget is not None and len(tokens) > budget:
        raise RecordError(f"completion_token_ids: {len(tokens)} tokens, the sampling budget is {budget} "
                          "(rollout.sampling.max_new_tokens)")
    if budget is not None and len(kwargs["completion_text"]) > budget * MAX_TOKEN_CHARS:
        raise RecordError(f"completion_text: {len(kwargs['completion_text'])} characters, more than {budget} "
                          f"tokens of at most {MAX_TOKEN_CHARS} characters can decode to")
    for name in ("prompt_token_ids", "completion_token_ids"):
        if len(kwargs[name]) and int(kwargs[name].min()) < 0:
            raise RecordError(f"{name}: a negative token id ({int(kwargs[name].min())})")
    if not np.isfinite(logprobs).all() or (logprobs > 1e-3).any():  # rounding may pass 0 by a hair
        raise RecordError("sampling_logprobs: not all finite and <= 0 (a NaN, infinite or positive log-probability "
                          "would poison the loss)")
    if len(logprobs) != len(tokens):
        raise RecordError(f"sampling_logprobs has {len(logprobs)} values for {len(tokens)} completion tokens")


def _checked_meta(meta) -> dict:
    """str -> scalar, bounded; ``row`` and ``dataset_index`` (what readers index with) non-negative ints."""
    if not isinstance(meta, dict) or len(meta) > MAX_META_ITEMS:
        raise RecordError(f"meta must be a map of at most {MAX_META_ITEMS} entries")
    for key, value in meta.items():
        if not isinstance(key, str) or len(key) > MAX_META_CHARS:
            raise RecordError(f"meta: key {str(key)[:40]!r} is not a short string")
        if isinstance(value, str):
            if len(value) > MAX_META_CHARS:
                raise RecordError(f"meta.{key}: {len(value)} characters, at most {MAX_META_CHARS}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise RecordError(f"meta.{key}: {value} is not finite")
        elif value is not None and not isinstance(value, int):
            raise RecordError(f"meta.{key}: {type(value).__name__}, expected a string, number, boolean or nil")
    for key in ("row", "dataset_index"):
        if key in meta and not (isinstance(meta[key], int) and not isinstance(meta[key], bool) and meta[key] >= 0):
            raise RecordError(f"meta.{key}: {meta[key]!r}, expected a non-negative integer")
    return meta


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


def _optional_rle(rle, mask_shape: Optional[tuple[int, int, int]]) -> Optional[dict]:
    if rle is None:
        return None
    if not (isinstance(rle, dict) and isinstance(rle.get("shape"), list) and isinstance(rle.get("counts"), list)):
        raise RecordError("masks_rle must be a map with 'shape' and 'counts' lists")
    shape = rle["shape"]
    if len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise RecordError(f"masks_rle: shape {str(shape)[:80]} is not [frames, height, width]")
    if mask_shape is not None and any(n > most for n, most in zip(shape, mask_shape)):
        raise RecordError(f"masks_rle: shape {shape} exceeds the run's masks, at most {list(mask_shape)} "
                          "(data.num_frames, data.mask_size)")
    try:
        rle_check(rle)  # counts only: the masks are expanded where they are used (rewards)
    except (ValueError, TypeError, OverflowError) as e:
        raise RecordError(f"masks_rle: {e}") from None
    return rle

import msgpack
import numpy as np
import pytest

from aurora_rl.records import RecordError, RecordLimits, RolloutRecord, decode, encode


def make_record(**kw) -> RolloutRecord:
    base = dict(
        uid="vid_a_b_3_1", group_id="step0/vid_a_b_3_1", sample_index=1, group_size=3, policy_version=4,
        prompt_token_ids=np.array([5, 6, 7]), completion_token_ids=np.array([9, 10]),
        sampling_logprobs=np.array([-0.25, -1.5]), completion_text="It is [SEG] .",
    )
    base.update(kw)
    return RolloutRecord(**base)


def test_round_trip_is_exact_including_masks_and_rewards():
    masks = np.zeros((10, 8, 8), dtype=bool)
    masks[:, 2:5, 3:6] = True
    rec = make_record(rewards={"format": 1.0, "iou": 0.5}, reward=1.5, meta={"actor": 0}).with_masks(masks)
    out = decode(encode(rec))
    assert out.uid == rec.uid and out.record_id == "step0/vid_a_b_3_1/1"
    assert out.completion_token_ids.dtype == np.int32 and list(out.completion_token_ids) == [9, 10]
    assert out.sampling_logprobs.dtype == np.float32 and list(out.sampling_logprobs) == [-0.25, -1.5]
    assert np.array_equal(out.masks(), masks)
    assert out.rewards == {"format": 1.0, "iou": 0.5} and out.reward == 1.5 and out.meta == {"actor": 0}


def test_no_seg_record_has_no_masks():
    assert decode(encode(make_record())).masks() is None


def _tamper(**changes) -> bytes:
    body = msgpack.unpackb(encode(make_record()), raw=False)
    body.update(changes)
    return msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xc1\xff garbage", "not a msgpack record"),
        (msgpack.packb([1, 2, 3]), "must be a map"),
        (_tamper(schema=99), "schema version 99"),
        (_tamper(uid=5), "uid: expected str"),
        (_tamper(sample_index=True), "sample_index: expected int"),
        (_tamper(sample_index=3), "outside group of 3"),
        (_tamper(sampling_logprobs=np.zeros(3, "<f4").tobytes()), "3 values for 2 completion tokens"),
        (_tamper(completion_token_ids=b"\x00\x01\x02"), "not a multiple of 4"),
        (_tamper(masks_rle={"shape": [1, 2, 2], "counts": [1]}), "masks_rle"),
        (_tamper(rewards={"iou": "high"}), "rewards must map names to numbers"),
        (_tamper(evil="x"), "unknown fields"),
        (msgpack.packb(msgpack.ExtType(5, b"code")), "extension type"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(payload, reason):
    with pytest.raises(RecordError, match=reason):
        decode(payload)


def test_oversized_record_is_refused_before_unpacking():
    payload = encode(make_record(completion_text="x" * 5000))
    with pytest.raises(RecordError, match="exceeds the limit of 1024"):
        decode(payload, RecordLimits(max_bytes=1024))


def test_decode_checks_mask_runs_and_leaves_expanding_to_the_reader(monkeypatch):
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True
    payload = encode(make_record().with_masks(masks))
    import aurora_rl.records as records

    def refuse(rle):
        raise AssertionError("decode expanded the masks")

    monkeypatch.setattr(records, "rle_decode", refuse)  # decode (learner, collector, scorer) never expands
    out = decode(payload)
    assert out.masks_rle["shape"] == [2, 4, 4]
    monkeypatch.undo()
    assert np.array_equal(out.masks(), masks)  # the reward path expands them on demand


RUN = RecordLimits(max_completion_tokens=16, max_group_size=4, mask_shape=(10, 32, 32))
POISON_MASK = {"shape": [1, 100_000, 100_000], "counts": [10**10]}  # 10 GB of pixels in a few bytes


@pytest.mark.parametrize(
    "record, field",
    [
        (make_record(policy_version=-7), "policy_version -7 is negative"),
        (make_record(group_size=2**62), "group_size 4611686018427387904 outside 1..4"),
        (make_record(sample_index=3, group_size=3), "sample_index 3 outside group of 3"),
        (make_record(meta={"dataset_index": "zzz"}), "meta.dataset_index: 'zzz'"),
        (make_record(meta={"row": -1}), "meta.row: -1"),
        (make_record(meta={"actor": {"nested": 1}}), "meta.actor: dict"),
        (make_record(meta={"note": "x" * 2000}), "meta.note: 2000 characters"),
        (make_record(uid=""), "uid: 0 characters"),
        (make_record(completion_token_ids=np.arange(17), sampling_logprobs=np.full(17, -1.0)),
         "17 tokens, the sampling budget is 16"),
        (make_record(completion_text="x" * (16 * 64 + 1)), "completion_text: 1025 characters"),
        (make_record(completion_token_ids=np.array([9, -4])), "completion_token_ids: a negative token id"),
        (make_record(sampling_logprobs=np.array([-0.25, 0.5])), "sampling_logprobs: not all finite and <= 0"),
        (make_record(masks_rle=POISON_MASK), r"shape \[1, 100000, 100000\] exceeds the run's masks, at most \[10, 32, 32\]"),
        (make_record(masks_rle={"shape": [4, 4], "counts": [16]}), r"is not \[frames, height, width\]"),
    ],
)
def test_every_field_out_of_the_runs_range_is_refused_naming_it(record, field):
    with pytest.raises(RecordError, match=field):
        decode(encode(record), RUN)


def test_a_few_hundred_bytes_cannot_make_a_reader_expand_gigabytes_of_mask():
    """The poison record: a valid schema whose mask run declares 10^10 pixels. Without the run's
    mask shape only the counts are checked (nothing expanded); with it, refused at decode."""
    payload = encode(make_record(masks_rle=POISON_MASK, meta={"row": 0}))
    assert len(payload) < 400
    assert decode(payload).masks_rle["shape"] == [1, 100_000, 100_000]  # no limit given: read, not expanded
    with pytest.raises(RecordError, match="exceeds the run's masks"):
        decode(payload, RUN)
    assert decode(encode(make_record(masks_rle={"shape": [10, 32, 32], "counts": [10240]})), RUN).masks().shape \
        == (10, 32, 32)

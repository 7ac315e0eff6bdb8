"""One real rollout actor (vLLM + the [SEG] pass) on bad input and at its limits: a batch over the
prompt limit is split and gives the same records; a clip that cannot be loaded is skipped, named
and counted while the rest of the shard is sampled; weights of another version are never sampled
from."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest

from aurora_rl.config.schema import DataConfig, RolloutConfig, SamplingConfig
from aurora_rl.data import refavs_layout as layout
from aurora_rl.records import decode
from learner.rollout_dispatch import sample_step

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
G = 3


@pytest.fixture(scope="module")
def data_root(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    shutil.copytree(synthetic_root, root)  # this module breaks files of its copy
    return root


@pytest.fixture(scope="module")
def actor(ray_node, redis_server, data_root, start_checkpoint, tmp_path_factory):
    import ray

    from actors.rollout_actor import RolloutActor

    stream = f"test:rollouts:{uuid.uuid4().hex[:8]}"
    handle = RolloutActor.remote(
        "rollout-t", str(start_checkpoint), str(tmp_path_factory.mktemp("actor")),
        DataConfig(root=str(data_root)), RolloutConfig(sampling=SamplingConfig(group_size=G, max_new_tokens=12)),
        redis_server.url, stream, seed=3)
    ray.get(handle.ready.remote())
    yield handle, stream
    ray.kill(handle)


def records_by_group(client, stream: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for _, fields in client.xrange(stream):
        r = decode(fields[b"r"])
        out.setdefault(r.group_id, []).append(r)
    return {gid: sorted(rs, key=lambda r: r.sample_index) for gid, rs in out.items()}


def test_a_batch_over_the_prompt_limit_is_split_and_gives_the_same_records(actor, redis_server, fault_row):
    import ray

    handle, stream = actor
    fault_row["fault"] = "rollout batch over the memory limit (split)"
    whole = ray.get(handle.rollout.remote([(i, f"whole/p{i}") for i in range(3)], 11, 0))
    split = ray.get(handle.rollout.remote([(i, f"split/p{i}") for i in range(3)], 11, 0, 1))
    assert (whole["chunks"], split["chunks"]) == (1, 3)
    assert whole["records"] == split["records"] == 3 * G
    groups = records_by_group(redis_server.client(), stream)
    for i in range(3):
        a, b = groups[f"whole/p{i}"], groups[f"split/p{i}"]
        assert len(a) == len(b) == G
        for x, y in zip(a, b):
            assert x.completion_token_ids.tolist() == y.completion_token_ids.tolist()
            np.testing.assert_allclose(x.sampling_logprobs, y.sampling_logprobs, atol=1e-4)
            assert (x.masks_rle is None) == (y.masks_rle is None)
            if x.masks_rle is not None:
                assert (x.masks() != y.masks()).mean() < 1e-3
    fault_row.update(lost=0, duplicated=0, dropped=0)


def test_a_clip_that_cannot_be_loaded_is_skipped_named_and_counted(actor, redis_server, data_root, fault_row):
    from aurora_rl.data import RefAVSDataset

    handle, stream = actor
    fault_row["fault"] = "corrupt JPEG in a training clip (skipped, counted)"
    rows = RefAVSDataset(data_root, "train").rows
    bad = next(i for i in range(1, len(rows)) if rows[i].vid != rows[0].vid)
    frame = layout.frame_path(data_root, rows[bad].vid, 4)
    good_bytes = frame.read_bytes()
    frame.write_bytes(good_bytes[:40])
    lines: list[str] = []
    try:
        sample = sample_step(lambda: {"rollout-t": handle}, [(0, "bad/p0"), (bad, "bad/p1")], 21, 0,
                             replace_dead=lambda dead: pytest.fail(f"no actor should die: {dead}"), log=lines.append)
    finally:
        frame.write_bytes(good_bytes)
    assert sample.group_ids == ["bad/p0"]  # the driver waits only for the group that was sampled
    ((index, group_id, error),) = sample.failed
    assert (index, group_id) == (bad, "bad/p1") and str(frame) in error
    groups = records_by_group(redis_server.client(), stream)
    assert len(groups["bad/p0"]) == G and "bad/p1" not in groups
    assert sample.rollouts[0]["records"] == G
    fault_row.update(lost=0, duplicated=0, dropped=1)  # one prompt, skipped and counted (its group never sampled)


def test_an_actor_never_samples_with_weights_of_another_version(actor, redis_server):
    import ray

    from actors.rollout_actor import WeightsVersionError

    handle, stream = actor
    before = redis_server.client().xlen(stream)
    with pytest.raises(WeightsVersionError, match="holds policy version 0, asked to sample with 1"):
        ray.get(handle.rollout.remote([(0, "v/p0")], 1, 1))
    assert redis_server.client().xlen(stream) == before  # nothing published


def test_a_batch_that_runs_out_of_memory_is_split_until_it_fits(capsys):
    from actors.rollout_actor import complete_splitting

    calls = []

    def complete(clips):  # a device that holds at most 3 prompts at once
        calls.append(len(clips))
        if len(clips) > 3:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return [f"done {c}" for c in clips]

    clips = list(range(10))
    assert complete_splitting(complete, clips, "rollout-0") == [f"done {c}" for c in clips]  # order kept
    assert calls == [10, 5, 2, 3, 5, 2, 3]
    assert "[rollout-0] a batch of 10 prompts ran out of memory; splitting it into 5 + 5" in capsys.readouterr().out


def test_other_errors_and_a_single_prompt_out_of_memory_are_not_hidden():
    import pytest

    from actors.rollout_actor import complete_splitting

    def broken(clips):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        complete_splitting(broken, [1, 2, 3, 4])

    def tiny_device(clips):
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        complete_splitting(tiny_device, [1, 2])

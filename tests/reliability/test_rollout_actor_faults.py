"""One real rollout actor (vLLM + the [SEG] pass) on bad input and at its limits: a batch over the
prompt limit is split and gives the same records; a batch whose allocation the kernel refuses
(an address-space limit set on the running actor) is split in halves and gives the same records;
a clip that cannot be loaded is skipped, named and counted while the rest of the shard is
sampled; weights of another version are never sampled from.

Each fault's row counts the records read back from the rollout stream: a prompt sent and neither
published whole (its G records) nor reported unloadable is lost; a (group, sample) published
twice is duplicated.
"""

from __future__ import annotations

import resource
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
MiB = 2**20


@pytest.fixture(scope="module")
def data_root(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    shutil.copytree(synthetic_root, root)  # this module breaks files of its copy
    return root


@pytest.fixture(scope="module")
def actor_log(tmp_path_factory):
    """Where the actor writes (vLLM's output and its own lines, the splits it logs among them)."""
    return tmp_path_factory.mktemp("actor-log") / "actor.log"


@pytest.fixture(scope="module")
def actor(ray_node, redis_server, data_root, start_checkpoint, actor_log, tmp_path_factory):
    import ray

    from actors.rollout_actor import RolloutActor

    stream = f"test:rollouts:{uuid.uuid4().hex[:8]}"
    handle = RolloutActor.remote(
        "rollout-t", str(start_checkpoint), str(tmp_path_factory.mktemp("actor")),
        DataConfig(root=str(data_root)), RolloutConfig(sampling=SamplingConfig(group_size=G, max_new_tokens=12)),
        redis_server.url, stream, seed=3, log_file=str(actor_log))
    ray.get(handle.ready.remote())
    yield handle, stream
    ray.kill(handle)


def records_by_group(client, stream: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for _, fields in client.xrange(stream):
        r = decode(fields[b"r"])
        out.setdefault(r.group_id, []).append(r)
    return {gid: sorted(rs, key=lambda r: r.sample_index) for gid, rs in out.items()}


def count_row(row: dict, groups: dict[str, list], sent: list[str], skipped: list[str]) -> None:
    """Fill a fault row from what the stream holds for the ``sent`` group ids: a group published
    whole (G records) or reported unloadable (``skipped``, dropped and counted) is accounted for;
    any other is lost; a sample index published twice is duplicated."""
    published = [(gid, r.sample_index) for gid in sent for r in groups.get(gid, [])]
    whole = {gid for gid in sent if {r.sample_index for r in groups.get(gid, [])} == set(range(G))}
    row.update(lost=len([gid for gid in sent if gid not in whole and gid not in skipped]),
               duplicated=len(published) - len(set(published)), dropped=len(skipped))


def assert_same_records(a: list, b: list) -> None:
    """Two runs of one prompt with one seed: the same completions, log-probabilities and masks."""
    assert len(a) == len(b) == G
    for x, y in zip(a, b):
        assert x.completion_token_ids.tolist() == y.completion_token_ids.tolist()
        np.testing.assert_allclose(x.sampling_logprobs, y.sampling_logprobs, atol=1e-4)
        assert (x.masks_rle is None) == (y.masks_rle is None)
        if x.masks_rle is not None:
            assert (x.masks() != y.masks()).mean() < 1e-3


def test_a_batch_over_the_prompt_limit_is_split_and_gives_the_same_records(actor, redis_server, fault_row):
    import ray

    handle, stream = actor
    fault_row["fault"] = "rollout batch over rollout.prompts_per_batch (sampled in chunks)"
    whole = ray.get(handle.rollout.remote([(i, f"whole/p{i}") for i in range(3)], 11, 0))
    split = ray.get(handle.rollout.remote([(i, f"split/p{i}") for i in range(3)], 11, 0, 1))
    groups = records_by_group(redis_server.client(), stream)
    count_row(fault_row, groups, [f"split/p{i}" for i in range(3)], [g for _, g, _ in split["failed"]])
    assert (whole["chunks"], split["chunks"]) == (1, 3)
    assert whole["records"] == split["records"] == 3 * G
    for i in range(3):
        assert_same_records(groups[f"whole/p{i}"], groups[f"split/p{i}"])


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
    groups = records_by_group(redis_server.client(), stream)
    count_row(fault_row, groups, ["bad/p0", "bad/p1"], [group_id for _, group_id, _ in sample.failed])
    assert sample.group_ids == ["bad/p0"]  # the driver waits only for the group that was sampled
    ((index, group_id, error),) = sample.failed
    assert (index, group_id) == (bad, "bad/p1") and str(frame) in error
    assert len(groups["bad/p0"]) == G and "bad/p1" not in groups
    assert sample.rollouts[0]["records"] == G


def test_an_actor_never_samples_with_weights_of_another_version(actor, redis_server):
    import ray

    from actors.rollout_actor import WeightsVersionError

    handle, stream = actor
    before = redis_server.client().xlen(stream)
    with pytest.raises(WeightsVersionError, match="holds policy version 0, asked to sample with 1"):
        ray.get(handle.rollout.remote([(0, "v/p0")], 1, 1))
    assert redis_server.client().xlen(stream) == before  # nothing published


def address_space(pid: int) -> int:
    """Bytes of address space process ``pid`` has mapped (what RLIMIT_AS caps)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def hold_working_memory(actor, per_prompt: int | None) -> list:
    """Run in the actor (``__ray_call__``): from now on each generate + [SEG] pass of n prompts
    first maps ``per_prompt`` * n bytes and holds them through the pass, as a real model's
    activations grow with the batch. The tiny model's own need, about 2 MB a prompt, is served
    from memory the allocator already holds, so no address-space limit tells 16 prompts from 8.
    ``None`` puts the engine back; returns each pass's (prompts, "held" or the allocation error)."""
    import torch

    engine = actor.engine
    if per_prompt is None:
        del engine.complete
        return engine.working_memory
    engine.working_memory = []

    def complete(clips, *args, **kwargs):
        try:
            held = torch.empty(per_prompt * len(clips), dtype=torch.uint8)
        except RuntimeError as e:
            engine.working_memory.append((len(clips), str(e)))
            raise
        engine.working_memory.append((len(clips), "held"))
        try:
            return type(engine).complete(engine, clips, *args, **kwargs)
        finally:
            del held

    engine.complete = complete
    return []


def test_a_batch_the_kernel_refuses_memory_for_is_split_in_halves_with_the_same_records(actor, actor_log,
                                                                                          redis_server, fault_row):
    """A real allocation failure in the running actor. After vLLM has started, the actor's address
    space is capped (RLIMIT_AS, set from outside with prlimit) at what it maps plus room for 8
    prompts' working memory and 256 MiB besides; a pass of 16 asks for more, the kernel refuses
    the mapping and torch raises "can't allocate memory"; the actor samples 8 + 8, which fit,
    and publishes the records an unlimited run of the 16 published."""
    import ray

    handle, stream = actor
    fault_row["fault"] = "rollout batch over the memory limit (split)"
    n, per_prompt = 16, 64 * MiB
    pid = ray.get(handle.ready.remote())["pid"]
    ray.get(handle.__ray_call__.remote(hold_working_memory, per_prompt))
    try:
        unlimited = ray.get(handle.rollout.remote([(i, f"fits/p{i}") for i in range(n)], 11, 0))
        splits_before = actor_log.read_text().count("ran out of memory")
        soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        resource.prlimit(pid, resource.RLIMIT_AS, (address_space(pid) + n // 2 * per_prompt + 256 * MiB, hard))
        try:
            limited = ray.get(handle.rollout.remote([(i, f"oom/p{i}") for i in range(n)], 11, 0))
        finally:
            resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
    finally:
        passes = ray.get(handle.__ray_call__.remote(hold_working_memory, None))
    groups = records_by_group(redis_server.client(), stream)
    count_row(fault_row, groups, [f"oom/p{i}" for i in range(n)], [g for _, g, _ in limited["failed"]])
    assert [k for k, _ in passes] == [n, n, n // 2, n // 2], passes
    assert passes[0][1] == passes[2][1] == passes[3][1] == "held"
    assert "can't allocate memory" in passes[1][1] and f"{n * per_prompt} bytes" in passes[1][1], passes
    splits = [line for line in actor_log.read_text().splitlines() if "ran out of memory" in line][splits_before:]
    assert splits == [f"[rollout-t] a batch of {n} prompts ran out of memory; splitting it into 8 + 8"]
    assert unlimited["records"] == limited["records"] == n * G and limited["failed"] == []
    for i in range(n):
        assert_same_records(groups[f"fits/p{i}"], groups[f"oom/p{i}"])


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

"""The device a process computes on, resolved once: a GPU when its role asked Ray for one, the CPU
otherwise. A role that asked for a GPU and got none stops with ``NoGPUError``; it never falls back
to the CPU (a 7B policy on a CPU beside an idle GPU is a silent 100x slowdown)."""

from __future__ import annotations

import os


class NoGPUError(RuntimeError):
    """A role configured for a GPU has none it can use."""


def role_device(role: str, gpus: float) -> str:
    """``"cuda:0"`` (the first device Ray made visible to the process) for a role that asked for
    ``gpus`` > 0, else ``"cpu"``. Raises NoGPUError naming the role, what Ray gave it and what torch
    sees. The index is explicit: a bare "cuda" asks the driver for the current device."""
    if gpus <= 0:
        return "cpu"
    import ray
    import torch

    given = ray.get_gpu_ids() if ray.is_initialized() else []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    if not given or not torch.cuda.is_available():
        raise NoGPUError(f"{role} asked for {gpus:g} GPU(s); Ray gave it GPU ids {given or 'none'} "
                         f"(CUDA_VISIBLE_DEVICES={visible}) and torch sees {torch.cuda.device_count()} CUDA "
                         "devices: it does not run on the CPU instead")
    return "cuda:0"


def memory_report(device: str) -> dict:
    """What this process's device holds and has left, in GiB, and the node it is on
    (``aurora-rl preflight`` asks every worker for it).

    On a GPU: the device's total and free memory as the driver reports them (everything on the
    card counts, a vLLM engine core in another process included) and this process's peak
    allocation by torch. On the CPU: the machine's total and available memory and this
    process's resident set.
    """
    import psutil
    import ray

    node = ray.util.get_node_ip_address()

    gib = 2**30
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return {"device": f"{device} ({torch.cuda.get_device_name(device)})", "node": node, "total_gib": total / gib,
                "free_gib": free / gib, "process_gib": torch.cuda.max_memory_allocated(device) / gib}
    vm = psutil.virtual_memory()
    return {"device": "cpu", "node": node, "total_gib": vm.total / gib, "free_gib": vm.available / gib,
            "process_gib": psutil.Process().memory_info().rss / gib}

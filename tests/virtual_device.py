"""A CUDA device on a CPU-only build, for tests that must fail where a GPU run would.

Inside ``VirtualCuda()`` every tensor carries a device of its own while its data stays on the
CPU: ``.to("cuda:0")``, ``.cuda()``, ``device="cuda:0"`` and ``Module.to`` mark it "cuda:0",
``.cpu()`` marks it "cpu", and ``tensor.device`` answers the mark, so code that follows its
inputs' device (``torch.arange(n, device=x.device)``) behaves as on a GPU. An op whose tensors
sit on two devices raises ``DeviceMismatch`` naming the op, as CUDA would (a 0-dim CPU tensor
may join a CUDA op, as in torch; a CPU index may index a CUDA tensor). ``.numpy()`` of a CUDA
tensor raises, as in torch. Gradients take their parameter's device.

``FakeTensorMode`` was the first choice; it stops at data-dependent ops (``.item()``, boolean
masks, ``nonzero``) that the policy's forward needs, and its backward aborts the process on a
CPU build. Here the real CPU kernels run, so values, losses and gradients are the real ones.

``collectives_on(device)`` wraps ``torch.distributed``'s collectives to assert that every tensor
they get sits on ``device`` (NCCL takes CUDA tensors only).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
ATTR = "_virtual_device"
# ops whose tensor arguments may legitimately sit on two devices
CROSS_DEVICE = {"to", "copy_", "cpu", "cuda", "__getitem__", "__setitem__", "set_", "_has_compatible_shallow_copy_type"}


class DeviceMismatch(RuntimeError):
    pass


# A device belongs to memory: the mark is kept per storage. Views, ``.data``, the parameters made
# of a tensor and copies' aliases all share it; a storage-less or empty tensor keeps its own.
_MARKS: dict[int, torch.device] = {}


def _storage_key(t: torch.Tensor) -> int | None:
    with torch._C.DisableTorchFunction():
        try:
            ptr = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return None
    return ptr or None


def device_of(t: torch.Tensor) -> torch.device:
    key = _storage_key(t)
    if key is not None and key in _MARKS:
        return _MARKS[key]
    return getattr(t, ATTR, CPU)


def _mark(value: Any, device: torch.device) -> Any:
    def mark(x):
        if isinstance(x, torch.Tensor):
            key = _storage_key(x)
            if key is not None:
                _MARKS[key] = device
            else:
                try:
                    setattr(x, ATTR, device)
                except (AttributeError, RuntimeError):  # a tensor type without a __dict__
                    pass
        return x

    return tree_map(mark, value)


def _requested(device: Any) -> torch.device | None:
    if device is None:
        return None
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda":
        return torch.device("cuda", device.index or 0)
    return device


def _name(func) -> str:
    name = getattr(func, "__name__", "")
    owner = getattr(func, "__self__", None)
    if name in ("__get__", "__set__") and owner is not None:
        return f"{owner.__name__}.{name}"
    return name or repr(func)


class VirtualCuda(TorchFunctionMode):
    def __exit__(self, *exc):
        _MARKS.clear()  # storages are freed and their memory reused: marks last as long as the mode
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = _name(func)
        if name == "device.__get__":
            return device_of(args[0])
        if name == "is_cuda.__get__":
            return device_of(args[0]).type == "cuda"
        if name == "get_device":
            return device_of(args[0]).index if device_of(args[0]).type == "cuda" else -1
        if name == "data.__set__":
            func(*args, **kwargs)
            _mark(args[0], device_of(args[1]))
            return None
        if name == "__deepcopy__":  # the memo holds tensors of any device; the copy keeps the source's
            return _mark(func(*args, **kwargs), device_of(args[0]))
        if name in ("grad.__get__", "data.__get__"):
            out = func(*args, **kwargs)
            return _mark(out, device_of(args[0])) if out is not None else out
        if name == "numpy" and device_of(args[0]).type == "cuda":
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first.")

        target = None
        if name == "cuda":  # as .to("cuda:0")
            func, target, args = torch.Tensor.to, CUDA, args[:1]
            kwargs = {"non_blocking": kwargs.get("non_blocking", False)}
        elif name == "cpu":
            target = CPU
        elif name == "to":
            args, kwargs, target = _strip_to(args, kwargs)
        elif "device" in kwargs:
            target = _requested(kwargs["device"])
            if target is not None and target.type == "cuda":
                kwargs["device"] = "cpu"

        if name not in CROSS_DEVICE:
            _check_same_device(name, args, kwargs)
        out = func(*args, **kwargs)
        if target is None:
            target = _common_device(args, kwargs)
        if name in ("cuda", "to", "cpu") and out is args[0] and device_of(args[0]) != target:
            out = out.clone()  # a copy to another device is a new tensor; the source keeps its device
        return _mark(out, target)


def _strip_to(args, kwargs):
    """``Tensor.to``'s call (as ``Module.to`` makes it too) without its device; the device asked for."""
    other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.pop("other", None))
    if other is not None:  # to(other): other's device and dtype
        rest = [a for a in args[1:] if a is not other]
        return (args[0],), {"dtype": other.dtype, **dict(zip(("non_blocking", "copy"), rest)), **kwargs}, \
            device_of(other)
    copy = kwargs.pop("copy", False)
    device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args[1:], **kwargs)
    call = {"dtype": dtype, "non_blocking": non_blocking, "copy": copy}
    if memory_format is not None:
        call["memory_format"] = memory_format
    return (args[0],), call, _requested(device) or device_of(args[0])


def _tensors(args, kwargs) -> list[torch.Tensor]:
    leaves, _ = tree_flatten((args, kwargs))
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def _check_same_device(name: str, args, kwargs) -> None:
    devices = {device_of(t) for t in _tensors(args, kwargs) if not (t.dim() == 0 and device_of(t).type == "cpu")}
    if len(devices) > 1:
        raise DeviceMismatch(f"{name}: expected all tensors to be on the same device, found "
                             f"{', '.join(sorted(str(d) for d in devices))}")


def _common_device(args, kwargs) -> torch.device:
    devices = [device_of(t) for t in _tensors(args, kwargs)]
    return next((d for d in devices if d.type == "cuda"), devices[0] if devices else CPU)


@contextlib.contextmanager
def collectives_on(device: torch.device | str):
    """``torch.distributed``'s collectives assert that their tensors sit on ``device``, then run."""
    import torch.distributed as dist

    device = torch.device(device)
    names = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor", "reduce")
    saved = {n: getattr(dist, n) for n in names}

    def checked(n, real):
        def call(*args, **kwargs):
            for t in _tensors(args, kwargs):
                if device_of(t) != device:
                    raise DeviceMismatch(f"torch.distributed.{n} got a tensor on {device_of(t)}; the process's "
                                         f"collectives run on {device}")
            return real(*args, **kwargs)
        return call

    for n, real in saved.items():
        setattr(dist, n, checked(n, real))
    try:
        yield
    finally:
        for n, real in saved.items():
            setattr(dist, n, real)

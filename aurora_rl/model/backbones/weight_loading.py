"""Reading pretrained weight folders and placing their tensors into modules built on the meta device.

A 7B checkpoint is 15 GB in bf16: building the modules with real random weights first and then
overwriting them would need that twice (and float32 random init, 30 GB more). So modules are
built with their parameters on the meta device (``empty_init``) and ``assign_weights`` puts the
file tensors in place, cast once to the target dtype. Non-persistent buffers (rotary
frequencies, position ids) are built normally: they are computed, not stored.

``WeightFiles`` reads Hugging Face folders: one ``*.safetensors`` file, a sharded set with its
``model.safetensors.index.json``, or PyTorch ``*.bin`` files; tensors are read one by one on
demand (safetensors memory-maps), so only what a module needs is ever in memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn


class WeightFiles:
    """The tensors of a checkpoint folder by name, read lazily."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"weights folder {self.folder} does not exist")
        self._where: dict[str, Path] = {}
        self._bins: dict[Path, dict[str, torch.Tensor]] = {}
        index = self.folder / "model.safetensors.index.json"
        if index.exists():
            for name, file in json.loads(index.read_text())["weight_map"].items():
                self._where[name] = self.folder / file
        else:
            for path in sorted(self.folder.glob("*.safetensors")):
                self._index_safetensors(path)
        if not self._where:
            for path in sorted(self.folder.glob("*.bin")):
                self._bins[path] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                self._where.update({name: path for name in self._bins[path]})
        if not self._where:
            raise FileNotFoundError(f"{self.folder}: no *.safetensors or *.bin weight files")

    def _index_safetensors(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            self._where.update({name: path for name in f.keys()})

    def keys(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        path = self._where[name]
        if path in self._bins:
            return self._bins[path][name]
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(name)

    def with_prefix(self, prefix: str) -> "TensorView":
        """The tensors whose names start with ``prefix``, named without it (a lazy mapping)."""
        return TensorView(self, {n[len(prefix):]: n for n in self._where if n.startswith(prefix)})


class TensorView(Mapping):
    """A read-only, lazily read name -> tensor mapping over some tensors of a ``WeightFiles``,
    under new names (``names``: new name -> name in the files)."""

    def __init__(self, files: WeightFiles, names: dict[str, str]):
        self.files, self.names = files, names

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.files.get(self.names[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@contextlib.contextmanager
def empty_init():
    """Build modules with parameters on the meta device (buffers stay real: they are computed)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def assign_weights(module: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype,
                   device: torch.device | str = "cpu", what: str = "module") -> None:
    """Load ``tensors`` (name, tensor) into a meta-built ``module``, cast to ``dtype`` on ``device``.

    Every parameter and persistent buffer must be given and nothing else: a missing or an
    unexpected name raises with the names, so a wrong key mapping never passes silently.
    """
    state = {name: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for name, t in tensors}
    expected = module.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{what}: weights do not match the architecture; missing {missing[:8]}"
                       f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                       f"{' ...' if len(unexpected) > 8 else ''}")
    module.load_state_dict(state, strict=True, assign=True)
    module.to(device)


def cast_parameters(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating parameters only; buffers (rotary frequencies) keep float32 precision."""
    for p in module.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
    return module


def materialize_random(module: nn.Module, dtype: torch.dtype, device: torch.device | str, std: float = 0.02,
                       seed: int = 0) -> nn.Module:
    """Give a meta-built ``module`` random weights directly on ``device`` (for size and speed checks).

    1-D ``weight`` parameters (the norm layers' scales) are set to 1, biases to 0, the rest drawn
    from N(0, std): a numerically stable random network, not a trained one.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    for sub in module.modules():
        for key, p in list(sub._parameters.items()):
            if p is None:
                continue
            data = torch.empty(p.shape, dtype=dtype, device=device)
            if p.ndim == 1 and key == "weight":
                data.fill_(1.0)
            elif key == "bias":
                data.zero_()
            else:
                data.copy_(torch.randn(p.shape, generator=gen, device=device) * std)
            sub._parameters[key] = nn.Parameter(data, requires_grad=p.requires_grad)
    for sub in module.modules():
        for key, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[key] = b.to(device)
    return module

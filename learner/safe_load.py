"""DeepSpeed checkpoints read without running code from them.

DeepSpeed's checkpoint engine loads its ``*_model_states.pt`` and ``*_optim_states.pt`` with
``torch.load(weights_only=False)``: a pickle in a run folder (shared, on NFS) could run anything
when a job resumes. ``weights_only_loads(engine)`` makes the engine load them with
``weights_only=True``, which unpickles tensors and plain data only, plus the few DeepSpeed and
torch types its own files hold (``SAFE_TYPES``); anything else is refused with
``UnsafeCheckpoint`` naming the file, and nothing of it runs.
"""

from __future__ import annotations


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint file holds objects that are neither tensors nor plain data."""


def safe_types() -> list:
    """The types a genuine ZeRO-1/2 checkpoint of this project holds besides tensors and plain data."""
    import argparse

    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, fragment_address, argparse.Namespace]


def load_weights_only(path: str, map_location=None):
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(safe_types()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpoint(f"{path}: refused, it holds objects that are not tensors or plain data ({first}); "
                               "nothing of it was run") from None


def weights_only_loads(engine) -> None:
    """Every file ``engine.load_checkpoint`` reads is loaded with ``load_weights_only``."""
    engine.checkpoint_engine.load = load_weights_only

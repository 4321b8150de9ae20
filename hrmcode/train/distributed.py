"""Single process or ``torchrun`` DDP/FSDP: which process this is, and the collectives training needs.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is started with ``gloo`` on CPU and
``nccl`` on CUDA; each process takes rows ``rank::world`` of every global micro-batch, and
loss sums and unit counts are all-reduced so the update equals the single-process update on
the same global batch (up to float summation order). Only rank 0 writes files.

``--parallel ddp`` replicates the model (``DistributedDataParallel``). ``--parallel fsdp``
shards it (FSDP2 ``fully_shard``, FULL_SHARD: parameters, gradients and optimizer state split
across processes, parameters gathered for each forward and backward and freed after). The whole
model is one FSDP unit: the HRM applies each stack many times per forward, so per-block units would
gather the same weights again on every call. Checkpoints stay ordinary: ``full_weights`` and
``full_optimizer_state`` gather onto rank 0 (collectives: every rank calls them), and
``load_full_state`` shards rank 0's again on resume. Rank 0 evaluates and writes with a plain copy
of the model (the ``replica`` of ``wrap``), loaded with the full weights first.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from hrmcode.errors import UsageError

PARALLEL = ("ddp", "fsdp")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str) -> tuple[Dist, torch.device]:
    """Start the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda but this torch has no usable CUDA device", "use --device cpu")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    info = Dist(rank=rank, world=world, local_rank=local_rank)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return info, torch_device


def wrap(model: nn.Module, info: Dist, device: torch.device, parallel: str) -> tuple[nn.Module, nn.Module | None]:
    """(the module to train, rank 0's plain replica for evaluation and saving under FSDP, else None).

    A single process trains ``model`` itself. Create the optimizer after this: FSDP replaces the parameters."""
    if not info.enabled:
        return model, None
    if parallel == "fsdp":
        replica = copy.deepcopy(model) if info.main else None
        fully_shard(model)
        return model, replica
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None), None


def accumulating(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) unless ``sync``: micro-batches before the last."""
    if sync:
        return contextlib.nullcontext()
    if isinstance(model, FSDPModule):
        return _fsdp_no_sync(model)
    return model.no_sync()


@contextlib.contextmanager
def _fsdp_no_sync(model: FSDPModule):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def plain_value(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP) scalar such as a gradient norm as an ordinary tensor."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """FSDP: the full weights on rank 0 (on the CPU), an empty dict elsewhere. A collective: every rank calls it."""
    return get_model_state_dict(model, options=_FULL)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """FSDP: the full optimizer state (keyed by parameter name) on rank 0, empty elsewhere. A collective."""
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optimizer_state: dict) -> None:
    """FSDP: rank 0's full weights and optimizer state (the others pass empty dicts) sharded into every
    rank's ``model`` and ``optimizer``. A collective."""
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    # Separately: set_state_dict takes a rank's empty weights for "optimizer only" and skips the broadcast
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def teardown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()

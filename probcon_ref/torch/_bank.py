"""A memory bank: the last M directions (and concentrations) as extra candidates.

The loss modules' ``memory_bank_size=M`` keeps a first-in first-out queue of the directions
of past batches' views (and, for the PCL, their concentrations), detached, and passes them
to the loss as extra candidates (the contract, section :ref:`3.1 <contract-loss>`): they join every
anchor's denominator and receive no gradient. As in MoCo, a batch is added after its own
loss is computed, so no anchor meets itself in the queue; until the queue is full only its
filled rows take part (the loss operator reads how many). The queue is allocated at the first batch (its width is the
embeddings' d), on the batch's device, in the dtype the loss computes in (float32 for half
inputs), and travels with the module's ``state_dict``.
"""

from __future__ import annotations

import torch

from .._arrays import integer_scalar

__all__ = ["MemoryBank", "check_bank_size"]


def check_bank_size(size) -> int:
    """``size`` as a Python int ``>= 0`` (0: no memory bank); a clear error otherwise."""
    message = "memory_bank_size must be a non-negative integer, got {}"
    try:
        value = integer_scalar(size, "memory_bank_size")
    except TypeError:
        raise TypeError(message.format(type(size).__name__ if not isinstance(size, bool) else "bool")) from None
    if value < 0:
        raise ValueError(message.format(value))
    return value


@torch.library.custom_op("probcon_ref::memory_bank_push", mutates_args=("directions", "kappa", "state"))
def _push(directions: torch.Tensor, kappa: torch.Tensor, state: torch.Tensor, z: torch.Tensor,
          z_kappa: torch.Tensor) -> None:
    """Write the directions of the rows of ``z`` (and ``z_kappa``, when ``kappa`` has rows)
    over the oldest rows of the queue; ``state`` (on the host) holds (filled, next)."""
    size = directions.shape[0]
    rows = z[-size:].to(directions.dtype)
    filled, start = int(state[0]), int(state[1])
    index = (torch.arange(rows.shape[0], device=rows.device) + start) % size
    directions.index_copy_(0, index, rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True))
    if kappa.shape[0]:
        kappa.index_copy_(0, index, z_kappa[-size:].to(kappa.dtype))
    state[0] = min(size, filled + rows.shape[0])
    state[1] = (start + rows.shape[0]) % size


@_push.register_fake
def _push_shapes(directions, kappa, state, z, z_kappa) -> None:
    return None


class MemoryBank(torch.nn.Module):
    """A FIFO queue of ``size`` unit directions (and concentrations when ``with_kappa``).

    No equation of its own: it stores the extra candidates ``nu_j`` (and ``lambda_j``) of
    the contract, section :ref:`3.1 <contract-loss>`. :meth:`candidates` returns the whole
    queue and how many of its rows are filled, :meth:`push` adds a batch's rows (the oldest
    are overwritten once it is full). The count of filled rows and the next row to write
    are kept on the host, in a small tensor that the loss operator and the push read without
    a device synchronisation; to ``torch.compile`` both are operators, so the queue's
    shapes are fixed once it exists and a compiled step is not compiled again as it fills.
    """

    def __init__(self, size: int, with_kappa: bool):
        super().__init__()
        self.size = check_bank_size(size)
        self.with_kappa = bool(with_kappa)
        self.register_buffer("directions", None)
        self.register_buffer("kappa", None)
        self.state = torch.zeros(2, dtype=torch.int64)  # (filled, next), on the host, not a buffer

    @property
    def filled(self) -> int:
        """How many rows hold a candidate (a host read, no device synchronisation)."""
        return int(self.state[0])

    def candidates(self) -> tuple:
        """``(directions, kappa)`` of the whole queue (``kappa`` has no rows without
        concentrations), or ``()`` before the first push."""
        if self.directions is None:
            return ()
        return self.directions, self.kappa

    @torch.no_grad()
    def push(self, z: torch.Tensor, kappa: torch.Tensor | None = None) -> None:
        """Add the directions of the rows of ``z`` (and their concentrations ``kappa``)."""
        work = z.detach()
        dtype = torch.float32 if work.dtype in (torch.float16, torch.bfloat16) else work.dtype
        if self.directions is None:
            self.directions = work.new_zeros((self.size, work.shape[1]), dtype=dtype)
            self.kappa = work.new_zeros((self.size if self.with_kappa else 0,), dtype=dtype)
        k = kappa.detach() if kappa is not None else work.new_zeros((0,))
        _push(self.directions, self.kappa, self.state, work, k)

    def get_extra_state(self):
        """The count of filled rows and the next row, for the ``state_dict``."""
        return {"filled": int(self.state[0]), "next": int(self.state[1])}

    def set_extra_state(self, state) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        self.state = torch.tensor([int(state["filled"]), int(state["next"])], dtype=torch.int64)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Allocate the queue in the saved shape first (a fresh module has none yet)."""
        for name in ("directions", "kappa"):
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name) is None:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, filled={self.filled}"

"""A memory bank: the last M directions (and concentrations) as extra candidates.

The loss modules' ``memory_bank_size=M`` keeps a first-in first-out queue of the directions
of past batches' views (and, for the PCL, their concentrations), detached, and passes them
to the loss as extra candidates (the contract, section :ref:`3.1 <contract-loss>`): they join every
anchor's denominator and receive no gradient. As in MoCo, a batch is added after its own
loss is computed, so no anchor meets itself in the queue; until the queue is full only its
filled rows take part. The queue is allocated at the first batch (its width is the
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


class MemoryBank(torch.nn.Module):
    """A FIFO queue of ``size`` unit directions (and concentrations when ``with_kappa``).

    No equation of its own: it stores the extra candidates ``nu_j`` (and ``lambda_j``) of
    the contract, section :ref:`3.1 <contract-loss>`. :meth:`candidates` returns the filled
    rows, :meth:`push` adds a batch's rows (the oldest are overwritten once it is full).
    """

    def __init__(self, size: int, with_kappa: bool):
        super().__init__()
        self.size = check_bank_size(size)
        self.with_kappa = bool(with_kappa)
        self.register_buffer("directions", None)
        self.register_buffer("kappa", None)
        self.filled = 0  # rows holding a candidate
        self.next = 0  # the row the next push starts at

    def candidates(self) -> tuple:
        """``(directions,)`` or ``(directions, kappa)`` of the filled rows; ``()`` while empty."""
        if self.filled == 0:
            return ()
        rows = self.directions[:self.filled]
        return (rows, self.kappa[:self.filled]) if self.with_kappa else (rows,)

    @torch.no_grad()
    def push(self, z: torch.Tensor, kappa: torch.Tensor | None = None) -> None:
        """Add the directions of the rows of ``z`` (and their concentrations ``kappa``)."""
        work = z.detach().float() if z.dtype in (torch.float16, torch.bfloat16) else z.detach()
        if self.directions is None:
            self.directions = work.new_zeros((self.size, work.shape[1]))
            if self.with_kappa:
                self.kappa = work.new_zeros((self.size,))
        rows = work[-self.size:] if work.shape[0] > self.size else work
        index = (torch.arange(rows.shape[0], device=rows.device) + self.next) % self.size
        self.directions.index_copy_(0, index, (rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True))
                                    .to(self.directions.dtype))
        if self.with_kappa:
            k = kappa.detach()[-rows.shape[0]:]
            self.kappa.index_copy_(0, index, k.to(self.kappa.dtype))
        self.next = (self.next + rows.shape[0]) % self.size
        self.filled = min(self.size, self.filled + rows.shape[0])

    def get_extra_state(self):
        return {"filled": self.filled, "next": self.next}

    def set_extra_state(self, state) -> None:
        self.filled, self.next = int(state["filled"]), int(state["next"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Allocate the queue in the saved shape first (a fresh module has none yet)."""
        for name in ("directions", "kappa"):
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name) is None:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, filled={self.filled}"

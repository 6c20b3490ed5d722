"""What every diagnosis shares: a :class:`Finding`, and the thresholds of a match."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Finding", "merge", "capitalised", "MATCH", "ROUNDING_LEVEL", "SMALL"]

#: A result "matches" a diagnostic variant when it agrees with it this well.
MATCH = {"float64": 1e-9, "float32": 1e-4}
#: The precision signatures: an error within this many units of roundoff of the logits' size
#: (loss) or of the positive's terms with a weight of size w_a (gradient). The textbook forms
#: stay within a quarter of it (the tests check it).
ROUNDING_LEVEL = 16
#: ... and only where the true result is at most this fraction of that size (a cancellation).
SMALL = 1e-2


@dataclass
class Finding:
    """One diagnosis: a recognised signature, what it means and where it shows."""

    signature: str
    summary: str
    detail: str
    runs: list = field(default_factory=list)  # (case name, dtype) pairs
    key: tuple = field(default=(), repr=False, compare=False)  # what a diagnosis matched, for the others

    def to_dict(self) -> dict:
        """The finding as JSON values."""
        return {"signature": self.signature, "summary": self.summary, "detail": self.detail,
                "runs": [{"case": c, "dtype": dt} for c, dt in self.runs]}


def capitalised(text: str) -> str:
    """``text`` with its first letter upper-case (a summary that starts a line)."""
    return text[0].upper() + text[1:]


def merge(findings: list) -> list:
    """One finding per signature (a reduction mistake can show in the loss and in the gradient)."""
    out: dict = {}
    for f in findings:
        if f.signature in out:
            out[f.signature].runs = sorted(set(out[f.signature].runs) | set(f.runs))
        else:
            out[f.signature] = f
    return list(out.values())

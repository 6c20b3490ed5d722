"""The outputs themselves: every call raised, the shape is not the declared one, or the
dtype is not the inputs'.
"""

from __future__ import annotations

from .finding import Finding

__all__ = ["DTYPE_DIAGNOSIS", "call_findings", "shape_findings", "dtype_findings"]

DTYPE_DIAGNOSIS = (
    "Output dtype differs from the inputs' ({what})",
    "The contract page, section 7: the loss and each gradient are returned in the dtype of the inputs (float16 "
    "and bfloat16 excepted). A float64 result for float32 inputs usually means a float64 constant "
    "or array promoted the computation (a NumPy float64 scalar, np.array of a Python list, torch."
    "tensor(..., dtype=torch.float64)), or the result was converted on the way out. The values "
    "were still compared with the reference; the table shows their errors.")


def dtype_findings(results: list) -> list:
    """The runs whose loss or gradients are not in the inputs' dtype (the contract, section :ref:`7 <contract-inputs>`)."""
    bad = [r for r in results if "dtype" in r.wrong]
    if not bad:
        return []
    what = sorted({part for r in bad for part in r.message.split("; ") if part.startswith("dtype: ")})
    summary, detail = DTYPE_DIAGNOSIS
    return [Finding("dtype", summary.format(what="; ".join(w[len("dtype: "):] for w in what)), detail,
                    sorted(r.run for r in bad))]


def call_findings(results: list, conv) -> list:
    """Every call raised: the calling convention is probably not the function's."""
    tried = [r for r in results if r.status != "skip"]
    errors = [r for r in tried if r.status == "error"]
    if not tried or len(errors) != len(tried):
        return []
    first = errors[0].message
    hints = [f"It is called as {conv.call_signature()} with {conv.framework} arrays."]
    low = first.lower()
    if conv.framework == "numpy" and ("tensor" in low or "attribute" in low or "torch" in low):
        hints.append("It may expect PyTorch tensors: try --framework torch.")
    if "argument" in low or "positional" in low:
        hints.append("The number of arguments differs: check --loss, and for NT-Xent --temperature "
                     "(given: the function takes two arguments; omitted: three), "
                     + ("and --extra-candidates, given here: the extra candidates follow the batch's "
                        "arguments" if conv.extra_candidates else
                        "and --extra-candidates if it takes extra candidates after the batch's arguments") + ".")
    return [Finding("calling-convention", f"Every call raised an exception: {first}", " ".join(hints),
                    sorted(r.run for r in errors))]


def shape_findings(results: list) -> list:
    """The runs whose output does not have the shape the declared reduction gives."""
    bad = [r for r in results if "shape" in r.wrong]
    if not bad:
        return []
    first = bad[0].message
    detail = "The output does not have the shape the declared reduction gives."
    if "expected (2N,)" in first and f"({bad[0].n},)" in first:
        detail += (" It holds N values: one direction only (view-1 anchors), or the two directions "
                   "averaged per pair.")
    elif "expected a scalar" in first:
        detail += " It is not reduced: validate with --reduction none if it returns per-anchor losses."
    return [Finding("shape", f"Wrong output shape: {first}", detail, sorted(r.run for r in bad))]

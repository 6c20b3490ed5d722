"""What the API page leaves out: the members that every ``NamedTuple`` has.

For each ``NamedTuple``, autodoc lists every field as "Alias for field number N", the
``count`` and ``index`` of every tuple and, with private members shown, ``_asdict``,
``_make``, ``_replace``, ``_fields`` and ``_field_defaults``. None of that is about this
package, so it is skipped. Each such class's docstring names its fields instead.
"""

from __future__ import annotations

from sphinx.application import Sphinx

#: What ``collections.namedtuple`` adds to every class it makes.
NAMEDTUPLE_MEMBERS = frozenset({"_asdict", "_make", "_replace", "_fields", "_field_defaults"})


def is_namedtuple_boilerplate(name: str, obj) -> bool:
    """Whether a class member ``name`` (``obj``) is one that ``NamedTuple`` or ``tuple`` provides."""
    if obj is tuple.count or obj is tuple.index or name in NAMEDTUPLE_MEMBERS:
        return True
    return (getattr(obj, "__doc__", None) or "").startswith("Alias for field number")


def _skip_member(app, what, name, obj, skip, options):
    return True if what == "class" and is_namedtuple_boilerplate(name, obj) else None


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-skip-member", _skip_member)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

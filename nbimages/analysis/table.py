"""The tables inspection returns: pandas DataFrames whose display escapes non-UTF-8 names.

A layer may name a file with bytes that are not UTF-8 (a Latin-1 `caf\\xe9`). Names are read
with surrogateescape, so `files().path` keeps the exact bytes (`os.fsencode` gives them back,
the CLI prints them as `tar tf` does). Shown as is in a notebook, such a string would be sent
by the kernel as invalid UTF-8 (jupyter_client encodes with surrogateescape) and arrive as
U+FFFD or not at all; a `Table` shows it as `caf\\xe9` instead, in its HTML and its text.

pandas is imported on first use (the CLI's --help and the store need none of it): the classes
are made then, and `nbimages.analysis.table.Table` resolves lazily, so pickles of a table load.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["printable", "table"]


def printable(text: str) -> str:
    """`text` with bytes that are not UTF-8 (surrogateescape-decoded) as `\\xNN` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def table(data: Any = None, **kwargs: Any) -> "pd.DataFrame":
    """A Table (a DataFrame shown with non-UTF-8 names escaped) of `data`."""
    return _classes()[0](data, **kwargs)


class _Escaped:
    """Text display with non-UTF-8 names as `\\xNN` escapes (mixed into Table and Column)."""

    def __repr__(self) -> str:
        return printable(super().__repr__())


@functools.cache
def _classes() -> tuple[type, type]:
    import pandas as pd

    class Column(_Escaped, pd.Series):
        """A column of a Table: shown with non-UTF-8 names escaped."""
        _constructor = property(lambda self: Column)
        _constructor_expanddim = property(lambda self: Table)

    class Table(_Escaped, pd.DataFrame):
        """A DataFrame shown (HTML and text) with non-UTF-8 names as `\\xNN` escapes; the
        values themselves keep the names' exact bytes (surrogateescape)."""
        _constructor = property(lambda self: Table)
        _constructor_sliced = property(lambda self: Column)

        def _repr_html_(self) -> str | None:
            shown = super()._repr_html_()
            return None if shown is None else printable(shown)

    for cls in (Column, Table):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return Table, Column


def __getattr__(name: str) -> type:
    if name in ("Table", "Column"):
        return dict(zip(("Table", "Column"), _classes()))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

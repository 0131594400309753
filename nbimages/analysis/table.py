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

from ..progress import format_bytes

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


# Columns shown for people in a notebook: byte counts with units ("5.0 kB"), permission bits
# in octal ("0755"). Only the display changes: the values stay the raw integers.
SIZE_COLUMNS = frozenset({"size", "compressed_size", "wasted_bytes", "total_bytes", "size_a",
                          "size_b", "declared_size", "bytes"})
MODE_COLUMNS = frozenset({"mode", "mode_a", "mode_b"})


def _human(fmt: Any) -> Any:
    """A formatter that leaves missing values blank (the nullable Int64 of a diff)."""
    return lambda v: "" if v is None or v != v or str(v) == "<NA>" else fmt(int(v))


def _nullable_integers(frame: "pd.DataFrame") -> list[Any]:
    """The columns of pandas' nullable integer types (Int64: a diff's sizes and modes)."""
    return [c for c in frame.columns  # numpy dtypes have no na_value, pandas' own ones do
            if frame[c].dtype.kind in "iu" and hasattr(frame[c].dtype, "na_value")]


def _display_formatters(frame: "pd.DataFrame") -> dict[str, Any]:
    """to_html formatters for the size and mode columns of `frame` (integer ones only), and
    for the other nullable integer columns (shown as floats, see _repr_html_)."""
    out: dict[str, Any] = {c: _human(str) for c in _nullable_integers(frame)}
    for col in frame.columns:
        if not isinstance(col, str) or frame[col].dtype.kind not in "iu":
            continue
        if col in SIZE_COLUMNS:
            out[col] = _human(format_bytes)
        elif col in MODE_COLUMNS:
            out[col] = _human(lambda m: f"{m:04o}")
    return out


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
            formatters = _display_formatters(self)
            if not formatters or self._info_repr() or not pd.get_option(
                    "display.notebook_repr_html"):
                shown = super()._repr_html_()
            else:  # as pandas shows it (truncated the same way), sizes and modes for people
                rows, most = len(self), pd.get_option("display.max_rows")
                # nullable integers print <NA> whatever na_rep says; as floats they are blank
                # where missing, and their formatters print them as integers again
                view = self.astype({c: "float64" for c in _nullable_integers(self)})
                shown = view.to_html(
                    formatters=formatters, notebook=True, max_cols=pd.get_option(
                        "display.max_columns"),
                    max_rows=most if most is None or rows <= most else pd.get_option(
                        "display.min_rows"),
                    show_dimensions=pd.get_option("display.show_dimensions"),
                    float_format=pd.get_option("display.float_format"), na_rep="")
            return None if shown is None else printable(shown)

    for cls in (Column, Table):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return Table, Column


def __getattr__(name: str) -> type:
    if name in ("Table", "Column"):
        return dict(zip(("Table", "Column"), _classes()))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Results as pandas DataFrames when pandas is installed, else as a small :class:`Table`."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence

__all__ = ["Table", "frame"]

_INSTALL = "pip install 'hoststore[pandas]'"


class Table:
    """Rows with named columns: what the functions return when pandas is not installed.

    Iterating gives each row as a dict; ``table["column"]`` gives a column's values as a list;
    :meth:`to_pandas` makes a DataFrame once pandas is installed.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Dict[str, Any]]) -> None:
        #: The column names, in order.
        self.columns: List[str] = list(columns)
        #: The rows, each a dict with every column.
        self.rows: List[Dict[str, Any]] = [{column: row.get(column) for column in self.columns} for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, column: str) -> List[Any]:
        if column not in self.columns:
            raise KeyError(f"no column {column!r}; the columns: {', '.join(self.columns)}")
        return [row[column] for row in self.rows]

    def __repr__(self) -> str:
        return f"<hoststore.Table {len(self.rows)} rows x {len(self.columns)} columns>"

    def to_pandas(self) -> Any:
        """The table as a pandas DataFrame."""
        try:
            import pandas
        except ImportError:
            raise ImportError(f"a DataFrame needs pandas: {_INSTALL}") from None
        return _data_frame(pandas, self.columns, self.rows)


def _data_frame(pandas: Any, columns: List[str], rows: List[Dict[str, Any]]) -> Any:
    data = pandas.DataFrame.from_records(rows, columns=columns) if rows else pandas.DataFrame(columns=columns)
    for column in ("start_time", "end_time"):
        if column in data.columns:
            data[column] = pandas.to_datetime(data[column], utc=True)
    return data


def frame(columns: Sequence[str], rows: Sequence[Dict[str, Any]]) -> Any:
    """A DataFrame of the rows when pandas can be imported, else a :class:`Table`."""
    table = Table(columns, rows)
    try:
        import pandas
    except ImportError:
        return table
    return _data_frame(pandas, table.columns, table.rows)

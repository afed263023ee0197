"""Row accounting: every input row is used or counted here with the reason it was not."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class IngestReport:
    """How the rows of one input were used.

    Attributes
    ----------
    source : str
        The file or table read.
    n_rows : int
        Data rows in the input.
    n_used : int
        Rows that went into the journeys.
    rejected : dict of str to int
        Rows not used, by reason (bad values, duplicates, outside the lookback window...).
    first_row : dict of str to int
        For each reason, the first 1-based data row it applied to, to look at.
    notes : tuple of str
        Things done to the data that changed no row count (merged case variants...).
    """

    source: str
    n_rows: int
    n_used: int
    rejected: dict = field(default_factory=dict)
    first_row: dict = field(default_factory=dict)
    notes: tuple = ()

    def __post_init__(self):
        if self.n_used + sum(self.rejected.values()) != self.n_rows:
            raise AssertionError(f"row accounting broken for {self.source}: {self.n_rows} rows, "
                                 f"{self.n_used} used, {sum(self.rejected.values())} rejected")

    @property
    def n_rejected(self) -> int:
        return int(sum(self.rejected.values()))

    @property
    def table(self) -> pd.DataFrame:
        """One row per reason: ``reason, rows, first_row``, most frequent first."""
        frame = pd.DataFrame({"reason": list(self.rejected),
                              "rows": [int(v) for v in self.rejected.values()],
                              "first_row": [self.first_row.get(r) for r in self.rejected]},
                             columns=["reason", "rows", "first_row"])
        return frame.sort_values(["rows", "reason"], ascending=[False, True], ignore_index=True)

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.n_rows} rows, {self.n_used} used, "
                 f"{self.n_rejected} not used"]
        lines += [f"  {row.rows:>9} {row.reason} (first: row {row.first_row})"
                  for row in self.table.itertuples()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

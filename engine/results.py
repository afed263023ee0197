"""Attribution: the one result type every model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.errors import EngineError

COLUMNS = ("model", "channel", "conversions", "conversions_lower", "conversions_upper", "value",
           "value_lower", "value_upper", "share")


@dataclass(frozen=True, eq=False)
class Attribution:
    """Credit per channel from one model: a tidy table plus, for probabilistic models, draws.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per channel with the columns ``model, channel, conversions, conversions_lower,
        conversions_upper, value, value_lower, value_upper, share`` (extra columns may follow).
        Bounds are NaN for deterministic models.
    ci_level : float
        Probability mass of the interval in the ``*_lower``/``*_upper`` columns.
    draws : dict of str to numpy.ndarray, optional
        ``{"conversions": (n_draws, n_channels), "value": (n_draws, n_channels)}`` for models
        with uncertainty; ``None`` for deterministic ones.
    params : dict
        The hyper-parameters of the model that produced it.

    Examples
    --------
    >>> from engine import Attribution
    >>> result = Attribution.from_credit("last_touch", ["a", "b"], conversions=[3.0, 1.0],
    ...                                  value=[30.0, 5.0])
    >>> result.table[["channel", "conversions", "share"]].to_dict("records")
    [{'channel': 'a', 'conversions': 3.0, 'share': 0.75}, {'channel': 'b', 'conversions': 1.0, 'share': 0.25}]
    """

    table: pd.DataFrame
    ci_level: float = 0.9
    draws: dict | None = None
    params: dict = field(default_factory=dict)

    @classmethod
    def from_credit(cls, model: str, channels, conversions, value, *, conversions_lower=None,
                    conversions_upper=None, value_lower=None, value_upper=None,
                    ci_level: float = 0.9, draws: dict | None = None, params: dict | None = None,
                    extra: dict | None = None) -> "Attribution":
        """Build the table from per-channel arrays; bounds default to NaN (no uncertainty)."""
        conversions = np.asarray(conversions, dtype=float)
        n = len(conversions)
        nan = np.full(n, np.nan)

        def column(values):
            return nan if values is None else np.asarray(values, dtype=float)

        total = conversions.sum()
        # No conversions at all: shares are undefined, not zero.
        share = conversions / total if total > 0 else np.full(n, np.nan)
        table = pd.DataFrame({
            "model": pd.Series([model] * n, dtype=object), "channel": list(channels),
            "conversions": conversions, "conversions_lower": column(conversions_lower),
            "conversions_upper": column(conversions_upper),
            "value": np.asarray(value, dtype=float), "value_lower": column(value_lower),
            "value_upper": column(value_upper), "share": share, **(extra or {})})
        return cls(table=table, ci_level=ci_level, draws=draws, params=dict(params or {}))

    @property
    def model(self) -> str:
        return str(self.table["model"].iat[0]) if len(self.table) else ""

    @property
    def channels(self) -> list:
        return self.table["channel"].tolist()

    def plot(self, metric: str = "conversions", ax=None):
        """Horizontal bar chart of credit per channel, with interval whiskers when known.

        Parameters
        ----------
        metric : {"conversions", "value", "share"}
        ax : matplotlib Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if metric not in ("conversions", "value", "share"):
            raise EngineError(f"metric must be 'conversions', 'value' or 'share', not {metric!r}")
        table = self.table.sort_values(metric)
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
        xerr = None
        if metric != "share" and table[f"{metric}_lower"].notna().any():
            xerr = np.vstack([table[metric] - table[f"{metric}_lower"],
                              table[f"{metric}_upper"] - table[metric]]).clip(min=0)
        ax.barh(table["channel"].astype(str), table[metric], xerr=xerr, color="#4C72B0")
        ax.set_xlabel(metric)
        ax.set_title(f"{self.model}: attributed {metric}")
        return ax

    def __repr__(self) -> str:
        return f"Attribution(model={self.model!r}, ci_level={self.ci_level})\n{self.table}"

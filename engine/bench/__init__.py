"""The benchmark runner: every model scored against the simulator's ground truth."""

from engine.bench.runner import (COLUMNS, nmae, plot_bench, rank_correlation, run_bench, score,
                                 score_roas, shares, summarise)

__all__ = ["COLUMNS", "run_bench", "summarise", "plot_bench", "score", "score_roas", "nmae",
           "rank_correlation", "shares"]

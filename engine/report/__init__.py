"""The self-contained HTML report: every model's credit, the data behind it, and how to read it.

``build_report(journeys, ...)`` returns one HTML page (inline SVG charts, inline stylesheet,
nothing fetched) that opens offline; ``write_report(path, journeys, ...)`` writes it. The
command line equivalent is ``attribution report INPUT --out report.html``.
"""

from engine.report.document import build_report, write_report

__all__ = ["build_report", "write_report"]

"""The study report: optimisation history, parameter importances, best vs seeds, heatmaps.

One self-contained HTML file (plotly.js embedded once), readable offline.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna

from xaisearch.files import write_text


def _figures(study: optuna.Study) -> list[tuple[str, str]]:
    """(title, html) of each plotly figure; a figure that cannot be drawn yet is explained instead."""
    from optuna import visualization

    figures = []
    makers = [
        ("Optimisation history", lambda: visualization.plot_optimization_history(study)),
        ("Parameter importances", lambda: visualization.plot_param_importances(study)),
    ]
    first = True
    for title, make in makers:
        try:
            with warnings.catch_warnings():  # PED-ANOVA warns on few trials; the figure says so itself
                warnings.simplefilter("ignore", UserWarning)
                figure = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            figures.append((title, f"<p class='note'>not available yet: {html.escape(str(error))}</p>"))
            continue
        figure.update_layout(height=420, margin={"t": 30})
        figures.append((title, figure.to_html(full_html=False, include_plotlyjs=first)))
        first = False
    return figures


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    study: optuna.Study,
    path: Path,
    comparison: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
    gallery: Sequence[tuple[str, Sequence[str]]] = (),
) -> Path:
    """Write the report atomically. ``comparison`` is (header, rows); ``gallery`` is
    ``[(row label, [PNG data URIs])]`` of heatmaps."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>xaisearch: {html.escape(study.study_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
        ".note{color:#777}img{margin:2px;image-rendering:pixelated}</style></head><body>",
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f"<p>{len(study.trials)} trials; objective maximised.</p>",
    ]
    if comparison is not None:
        parts += ["<h2>Best trial vs seed composites</h2>", _table(comparison[1], comparison[0])]
    for title, figure in _figures(study):
        parts += [f"<h2>{html.escape(title)}</h2>", figure]
    if gallery:
        parts.append("<h2>Heatmaps (red: positive relevance, blue: negative)</h2>")
        for label, images in gallery:
            parts.append(f"<p><b>{html.escape(label)}</b><br>" + "".join(f"<img src='{u}'>" for u in images) + "</p>")
    parts.append("</body></html>")
    return write_text(path, "\n".join(parts))

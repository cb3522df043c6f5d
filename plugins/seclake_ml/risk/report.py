"""Fit report of the risk models: actual-vs-predicted chart, metrics, residuals by feature group.

Written like the IP Insights calibration report: matplotlib's Agg canvas only, the PNG embedded in a
self-contained ``report.html`` next to ``metrics.json``. Every string from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

CHART_PNG = "actual_vs_predicted.png"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"


def _chart(test: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    y = test["y"].to_numpy()
    for i, (col, title) in enumerate((("pred_linear", "linear baseline (one-hot OLS)"),
                                      ("pred_boosted", "boosted trees (history features)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        p = test[col].to_numpy()
        ax.scatter(y, p, s=6, alpha=0.35, color="#1f77b4" if i == 0 else "#d62728", linewidths=0)
        ax.plot([0, 100], [0, 100], color="#444", linewidth=1, linestyle="--")
        r2 = 1 - np.sum((y - p) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-9)
        rmse = float(np.sqrt(np.mean((y - p) ** 2)))
        ax.set_title(f"{title}\nR² {r2:.3f}, RMSE {rmse:.2f} (test, n={len(y):,})", fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_xlabel("analyst risk score")
        ax.set_ylabel("predicted risk score")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def write_report(fit: Any, out_dir: str | Path, title: str = "CloudTrail risk model fit") -> dict[str, str]:
    """Write ``report.html``, ``metrics.json`` and (when supervised) the chart; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"version": fit.version, "interval": [fit.start, fit.end], "events": fit.events,
           "labels_available": fit.labels_available, "labels_used": fit.labels_matched,
           "supervised": fit.supervised, "metrics": fit.metrics, "boosted_params": fit.boosted_params,
           "residuals_by_group": fit.residuals}
    (out / METRICS_JSON).write_text(json.dumps(doc, indent=1, sort_keys=True, default=str), encoding="utf-8")
    paths = {"metrics": str(out / METRICS_JSON), "html": str(out / REPORT_HTML)}
    img = ""
    if fit.supervised and fit.test_frame is not None and len(fit.test_frame):
        _chart(fit.test_frame, out / CHART_PNG)
        paths["chart"] = str(out / CHART_PNG)
        b64 = base64.b64encode((out / CHART_PNG).read_bytes()).decode()
        img = f'<img alt="actual vs predicted" src="data:image/png;base64,{b64}">'
    e = html.escape
    rows = []
    for name in ("linear", "boosted", "unsupervised"):
        m = fit.metrics.get(name)
        if m:
            rows.append(f"<tr><td>{e(name)}</td><td>{m['r2']:.4f}</td><td>{m['rmse']:.3f}</td><td>{m['mae']:.3f}</td><td>{m['rows']:,}</td></tr>")
    resid = "".join(
        f"<tr><td>{e(r['group'])}</td><td>{e(r['value'])}</td><td>{r['rows']:,}</td>"
        f"<td>{r['linear_mean_residual']:+.2f}</td><td>{r['linear_rmse']:.2f}</td>"
        f"<td>{r['boosted_mean_residual']:+.2f}</td><td>{r['boosted_rmse']:.2f}</td></tr>"
        for r in fit.residuals
    )
    status = ("supervised: the boosted model scores events" if fit.supervised else
              f"unsupervised: {fit.labels_matched} labelled events in the window are too few to fit; "
              "the unsupervised combination scores events")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:2px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style>
</head><body><h1>{e(title)}</h1>
<p>Model <b>{e(fit.version)}</b>, events of [{e(fit.start)} .. {e(fit.end)}): {fit.events:,};
labels available {fit.labels_available:,}, matched to events {fit.labels_matched:,}. {e(status)}.</p>
<p>Split in time: the first 70 % of the labelled events train ({fit.metrics.get('train_rows', 0):,}), the last 30 % test
({fit.metrics.get('test_rows', 0):,}, {e(str(fit.metrics.get('test_start', '')))} .. {e(str(fit.metrics.get('test_end', '')))}).</p>
<h2>Test metrics</h2><table><tr><th>model</th><th>R²</th><th>RMSE</th><th>MAE</th><th>rows</th></tr>{''.join(rows)}</table>
<p>Boosted model: {e(json.dumps(fit.boosted_params))}</p>
{img}
<h2>Residuals by feature group (actual − predicted, test split)</h2>
<table><tr><th>group</th><th>value</th><th>rows</th><th>linear mean</th><th>linear RMSE</th><th>boosted mean</th><th>boosted RMSE</th></tr>{resid}</table>
</body></html>"""
    (out / REPORT_HTML).write_text(page, encoding="utf-8")
    return paths

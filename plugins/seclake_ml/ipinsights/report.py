"""Calibration report: score histograms with the threshold, ROC curve, metrics JSON, one HTML page.

matplotlib is imported only when a report is written, and only its Agg canvas is used (no pyplot,
no change to the process-wide backend). The HTML page embeds the images as base64, so it can be
mailed or attached to a ticket on its own.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from seclake_ml.ipinsights.calibration import CalibrationResult

__all__ = ["write_report"]

HISTOGRAM_PNG = "score_histogram.png"
ROC_PNG = "roc_curve.png"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _histogram(result: CalibrationResult, path: Path) -> None:
    fig = _figure(8.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    both = np.r_[result.normal_scores, result.abnormal_scores]
    lo, hi = np.quantile(both, [0.001, 0.999]) if both.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 101)
    ax.hist(np.clip(result.normal_scores, lo, hi), bins=bins, density=True, alpha=0.55, label=f"known normal (n={result.normal_scores.size:,})", color="#1f77b4")
    kinds = sorted(set(result.abnormal_kinds.tolist()))
    colours = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b"]
    for i, k in enumerate(kinds):
        sel = result.abnormal_scores[result.abnormal_kinds == k]
        ax.hist(np.clip(sel, lo, hi), bins=bins, density=True, histtype="step", linewidth=1.6, color=colours[i % len(colours)], label=f"abnormal: {k} (n={sel.size:,})")
    t = result.threshold
    ax.axvline(t.value, color="black", linestyle="--", linewidth=1.2, label=f"threshold {t.value:.3g} ({t.method})")
    ax.set_xlabel(("combined anomaly log-odds" if result.combiner is not None else "anomaly score = -dot_product")
                  + "  (higher = more anomalous)")
    ax.set_ylabel("density")
    ax.set_title("Score distributions, known normal vs injected abnormal")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def _roc(result: CalibrationResult, path: Path) -> None:
    fpr, tpr, _ = result.roc()
    fig = _figure(9.0, 4.2)
    t = result.threshold
    for i, log_x in enumerate((False, True)):
        ax = fig.add_subplot(1, 2, i + 1)
        x = np.maximum(fpr, 1e-6) if log_x else fpr
        ax.plot(x, tpr, color="#1f77b4", linewidth=1.6, label=f"ROC AUC {result.auc:.4f}")
        if t.fpr is not None and t.recall is not None:
            ax.plot([max(t.fpr, 1e-6) if log_x else t.fpr], [t.recall], "o", color="black", label=f"threshold: FPR {t.fpr:.4f}, recall {t.recall:.4f}")
        if log_x:
            ax.set_xscale("log")
            ax.set_xlim(1e-5, 1.0)
            ax.set_title("ROC, log false-positive rate")
        else:
            ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
            ax.set_title("ROC")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate (recall)")
        ax.set_ylim(0.0, 1.01)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def _rows(d: dict[str, Any]) -> str:
    out = []
    for k, v in d.items():
        text = f"{v:.6g}" if isinstance(v, float) else ("" if v is None else str(v))
        out.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(text)}</td></tr>")
    return "\n".join(out)


def write_report(result: CalibrationResult, out_dir: str | Path, title: str = "IP Insights threshold calibration",
                 context: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``score_histogram.png``, ``roc_curve.png``, ``metrics.json`` and ``report.html`` into ``out_dir``.

    :param result: from :func:`~seclake_ml.ipinsights.calibration.calibrate`.
    :param context: extra facts to show and store (model folder, training interval, ...).
    :return: name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"histogram": out / HISTOGRAM_PNG, "roc": out / ROC_PNG, "metrics": out / METRICS_JSON, "html": out / REPORT_HTML}
    _histogram(result, paths["histogram"])
    _roc(result, paths["roc"])
    metrics = {"context": context or {}, **result.metrics()}
    paths["metrics"].write_text(json.dumps(metrics, indent=2, default=str) + "\n")

    t = result.threshold
    images = {k: base64.b64encode(paths[k].read_bytes()).decode("ascii") for k in ("histogram", "roc")}
    summary = {
        "ROC AUC (all abnormal kinds)": result.auc,
        **{f"ROC AUC, {k}": v for k, v in result.auc_by_kind.items()},
        "threshold (anomaly score)": t.value,
        "equivalent rule": (f"flag when dot_product < {t.dot_product_cutoff:.6g}" if result.combiner is None
                            else "flag when the combined log-odds of dot_product and entity history > threshold"),
        "chosen by": t.method + (f" (target FPR {t.target_fpr:g})" if t.target_fpr is not None else ""),
        "precision": t.precision,
        "recall": t.recall,
        "false-positive rate": t.fpr,
        "F1": t.f1,
        **{f"recall, {k}": v for k, v in result.recall_by_kind.items()},
        "best-F1 threshold": result.best_f1.value,
        "best F1": result.best_f1.f1,
    }
    components = ""
    if result.components:
        comp_rows = {f"ROC AUC, {name}": c["roc_auc"] for name, c in result.components.items()}
        comp_rows.update({f"ROC AUC, {name}, {k}": v for name, c in result.components.items()
                          for k, v in c.get("roc_auc_by_kind", {}).items()})
        components = ("<h2>Components</h2>\n<p class=\"note\">On the same held-out pairs: the model alone "
                      "(&minus;dot_product), the nearest known IP of the entity alone (leading bits of distance), "
                      + ("and their combination (the deployed score).</p>\n" if result.combiner is not None else
                         f"and their combination.</p>\n<p class=\"note\">Not deployed: {html.escape(result.combiner_declined or '')}</p>\n")
                      + f"<table>{_rows(comp_rows)}</table>\n<table>{_rows({'combiner': json.dumps(result.combiner)})}</table>\n")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1000px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }}
th {{ background: #f4f4f4; font-weight: 600; }}
img {{ max-width: 100%; border: 1px solid #eee; margin-bottom: 1em; }}
.note {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(result.score_description)}. Known normal: later pairs of entities seen in training. Abnormal: injected pairs, by kind.
Pairs with invalid IPs or entities unknown to the model are left out (see counts).</p>
<h2>Summary</h2>
<table>{_rows(summary)}</table>
{components}<h2>Score distributions</h2>
<img alt="score histograms" src="data:image/png;base64,{images['histogram']}">
<h2>ROC curve</h2>
<img alt="ROC curve" src="data:image/png;base64,{images['roc']}">
<h2>Counts</h2>
<table>{_rows(result.counts)}</table>
<h2>Context</h2>
<table>{_rows(context or {})}</table>
</body></html>
"""
    paths["html"].write_text(page)
    return paths

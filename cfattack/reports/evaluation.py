"""``evaluation.html``: the table `cfattack evaluate` measured, self-contained, one row per method.

Each figure is shown with its 95% bootstrap interval; the realism column sits beside the two
yardsticks that give it meaning (real vs real, generator samples vs real).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from cfattack.reports.html import _CSP, _CSS

if TYPE_CHECKING:
    from cfattack.evaluation.evaluate import EvaluationReport, Interval

__all__ = ["render_evaluation_html"]


def _pct(interval: Interval) -> str:
    if interval.value is None:
        return "n/a"
    if interval.low is None or interval.high is None:
        return f"{interval.value:.1%}"
    return f"{interval.value:.1%} <small>[{interval.low:.1%}, {interval.high:.1%}]</small>"


def _num(interval: Interval, digits: int = 2) -> str:
    if interval.value is None:
        return "n/a"
    if interval.low is None or interval.high is None:
        return f"{interval.value:.{digits}f}"
    return f"{interval.value:.{digits}f} <small>[{interval.low:.{digits}f}, {interval.high:.{digits}f}]</small>"


def _opt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else escape(fmt.format(value))


def render_evaluation_html(report: EvaluationReport) -> str:
    """The page as one HTML string (no external resources)."""
    head = ("method", "valid (saved PNG)", "independent validity", "realism FD", "x generator", "L1 from input",
            "latent distance", "median steps", "s / explanation", "same top-3 (alone / batch / job)", "unsound starts")
    rows = []
    for m in report.methods:
        stable = "not measured" if m.stability is None else (
            f"{_pct(m.stability.same_top3_share)}; steps spread {_opt(m.stability.steps_spread_median, '{:.0f}')}")
        cells = (escape(m.method), _pct(m.validity), _pct(m.independent_validity), _num(m.realism_fd),
                 _opt(m.realism_ratio_to_generator, "{:.2f}"), f"{m.pixel_l1_from_input:.3f}",
                 _opt(m.latent_distance, "{:.2f}"), f"{m.steps_median:.0f}", f"{m.seconds_per_explanation:.2f}",
                 stable, str(m.unsound_start))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    judges = []
    for m in report.methods:
        shares = ", ".join(f"{escape(j)} {report_share:.0%}" for j, report_share in m.judge_target_share.items())
        judges.append(f"<li><b>{escape(m.method)}</b>: labelled as the target by {shares}</li>")
    table = ("<div class='wide'><table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cfattack evaluation: {escape(report.bundle)} / {escape(report.classifier)}</title>
<style>{_CSS} .wide {{ overflow-x: auto; }} td small {{ color: #666; }}</style></head>
<body><main>
<h1>Explanation quality: {escape(report.bundle)}, classifier {escape(report.classifier)}</h1>
<p>{report.images} held-out images ({escape(report.image_source)}), each explained toward its
second-ranked class. Validity counts an item only when its start was sound and the saved 8-bit
counterfactual passes the method's threshold; independent validity needs a majority of the judges
({escape(', '.join(report.judges))}), none of which the attack used, to see the target.
Intervals are 95% bootstrap intervals over items.</p>
<p>Realism is the Fr&eacute;chet distance to real images of the target classes in the embedding of
{escape(report.realism_judge)}: real vs real {_num(report.realism_floor)}, generator samples vs real
{_num(report.generator_fd)}.</p>
{table}
<h2>Per judge</h2><ul>{''.join(judges)}</ul>
<p class="note">Measured on {escape(report.machine)}, {report.threads} torch threads, in {report.seconds:.0f} s.</p>
</main></body></html>
"""

"""The leaderboard as ONE self-contained HTML file: inline CSS and inline SVG drawn here in Python; no
scripts, fonts or images from anywhere, so it opens offline (and in a headless browser in the tests).

    from evalgym.benchmarks.leaderboard import build_board
    from evalgym.benchmarks.leaderboard_html import to_html
    Path("leaderboard.html").write_text(to_html(build_board(rows)))

Sections: the score table (intervals; best per column green; flagged cells with a red ▼), the flag
list, score-vs-step plots per task per run (line, points and a 95% interval band; flagged points
ringed red), the recipe comparison, and a provenance table (model, git sha, lm-eval version, sampling,
seed, time) -- also as tooltips on each row and cell. All text is escaped.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any

from evalgym.benchmarks.leaderboard import Board, describe_flag, fmt_cell, interval

# one colour per run (red is kept for flags); the browser test looks for these pixels
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
FLAG_COLOR = "#d62728"
BEST_BG = "#c6efc0"
PLOT_W, PLOT_H = 320, 200
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 44, 12, 12, 30

_CSS = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1d1d1f; background: #fff; }}
h1 {{ margin: 0 0 4px; font-size: 24px; }}
h2 {{ margin-top: 28px; font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
h3 {{ font-size: 15px; margin: 14px 0 6px; }}
p.meta, small, .ci {{ color: #666; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #d0d0d0; padding: 4px 8px; text-align: left; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
td.num {{ font-variant-numeric: tabular-nums; }}
td.best {{ background: {BEST_BG}; font-weight: 600; }}
.flag {{ color: {FLAG_COLOR}; font-weight: 700; }}
.swatch {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 12px; text-align: center; }}
svg text {{ font-size: 10px; fill: #444; font-family: inherit; }}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _tip(fields: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in fields.items())


def to_html(board: Board, *, source: str = "") -> str:
    colors = {run: RUN_COLORS[i % len(RUN_COLORS)] for i, run in enumerate(dict.fromkeys(k.run for k in board.keys))}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>evalgym leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>evalgym leaderboard</h1>",
             f'<p class="meta">{len(board.keys)} checkpoints × {len(board.tasks)} tasks from {_e(source or "rows")}; '
             f"generated {now}. Cells: primary metric, value [95% interval]; green: best in column; "
             f'<span class="flag">▼</span> below its run\'s best by more than its interval.</p>',
             "<h2>Scores</h2>", _table(board, colors),
             "<h2>Flags</h2>", _flags(board),
             "<h2>Score vs step</h2>", _plots(board, colors),
             "<h2>Recipe comparison</h2>", _recipes(board),
             "<h2>Provenance</h2>", _provenance(board), "</body></html>"]
    return "\n".join(parts) + "\n"


def _table(board: Board, colors: dict[str, str]) -> str:
    head = "".join(f"<th>{_e(t)}<br><small>{_e(board.metrics[t])}</small></th>" for t in board.tasks)
    out = ['<table class="board" id="scores"><thead><tr><th>run</th><th>checkpoint</th><th>step</th>'
           f"{head}</tr></thead><tbody>"]
    for key in board.keys:
        tip = _tip({"checkpoint": key.checkpoint, **board.provenance(key)})
        cells = []
        for task in board.tasks:
            row = board.cell(key, task)
            if row is None:
                cells.append('<td class="num">—</td>')
                continue
            ci = interval(row)
            text = f"{row.value:.2f}" + (f' <span class="ci">[{ci[0]:.2f}, {ci[1]:.2f}]</span>' if ci else "")
            flag = board.flag(key, task)
            cls = "num" + (" best" if board.is_best(key, task) else "") + (" flagged" if flag else "")
            mark = f' <span class="flag" title="{_e(describe_flag(flag))}">▼</span>' if flag else ""
            cell_tip = _tip({"metric": row.metric, "n": row.n, "stderr": row.stderr,
                             **{k: row.manifest[k] for k in ("task_version", "verifier_version", "time")
                                if k in row.manifest}})
            cells.append(f'<td class="{cls}" title="{_e(cell_tip)}">{text}{mark}</td>')
        step = "—" if key.step is None else key.step
        out.append(f'<tr><td><span class="swatch" style="background:{colors[key.run]}"></span>{_e(key.run)}</td>'
                   f'<td title="{_e(tip)}">{_e(key.label)}</td><td class="num">{step}</td>{"".join(cells)}</tr>')
    return "\n".join(out) + "</tbody></table>"


def _flags(board: Board) -> str:
    if not board.flags:
        return "<p>None: no checkpoint is below its run's best by more than its interval.</p>"
    items = "".join(f'<li><span class="flag">▼</span> {_e(describe_flag(f))}</li>' for f in board.flags)
    return f'<ul id="flags">{items}</ul>'


def _plots(board: Board, colors: dict[str, str]) -> str:
    out = []
    for task in board.tasks:
        figures = []
        for run, color in colors.items():
            pts = [(k, board.cells[(k, task)]) for k in board.keys
                   if k.run == run and k.step is not None and (k, task) in board.cells]
            if pts:
                flagged = {f.key for f in board.flags if f.task == task}
                svg = svg_plot([(k.step, r.value, interval(r), k in flagged) for k, r in pts], color,
                               label=f"{run} · {task}")
                figures.append(f"<figure>{svg}<figcaption>{_e(run)}</figcaption></figure>")
        body = "".join(figures) or "<p><small>no checkpoints with a step</small></p>"
        out.append(f'<h3>{_e(task)} <small>{_e(board.metrics[task])}</small></h3><div class="plots">{body}</div>')
    return "\n".join(out)


def svg_plot(points: list[tuple[int, float, tuple[float, float] | None, bool]], color: str, *, label: str) -> str:
    """A score-vs-step line plot: (step, value, interval or None, flagged) per point, in step order."""
    steps = [p[0] for p in points]
    lows = [p[2][0] if p[2] else p[1] for p in points]
    highs = [p[2][1] if p[2] else p[1] for p in points]
    y0, y1 = min(lows), max(highs)
    if y0 >= 0 and y1 <= 1:
        y0, y1 = 0.0, 1.0
    elif y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
    x0, x1 = min(steps), max(steps)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    iw, ih = PLOT_W - _PAD_L - _PAD_R, PLOT_H - _PAD_T - _PAD_B

    def sx(step: float) -> float:
        return round(_PAD_L + (step - x0) / (x1 - x0) * iw, 2)

    def sy(value: float) -> float:
        return round(_PAD_T + (y1 - value) / (y1 - y0) * ih, 2)

    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_W}" height="{PLOT_H}" '
          f'viewBox="0 0 {PLOT_W} {PLOT_H}" role="img" aria-label="{_e(label)}">',
          f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{iw}" height="{ih}" fill="#fafafa" stroke="#ccc"/>']
    for v in (y0, (y0 + y1) / 2, y1):
        el.append(f'<line x1="{_PAD_L}" x2="{_PAD_L + iw}" y1="{sy(v)}" y2="{sy(v)}" stroke="#e6e6e6"/>'
                  f'<text x="{_PAD_L - 4}" y="{sy(v) + 3}" text-anchor="end">{v:.2f}</text>')
    for s in sorted({min(steps), max(steps)}):
        el.append(f'<text x="{sx(s)}" y="{PLOT_H - _PAD_B + 14}" text-anchor="middle">{s}</text>')
    el.append(f'<text x="{_PAD_L + iw / 2}" y="{PLOT_H - 4}" text-anchor="middle">step</text>')
    if any(p[2] for p in points):
        band = [f"{sx(s)},{sy(h)}" for s, h in zip(steps, highs)] + \
               [f"{sx(s)},{sy(lo)}" for s, lo in reversed(list(zip(steps, lows)))]
        if len(points) == 1:
            el.append(f'<line class="band" x1="{sx(steps[0])}" x2="{sx(steps[0])}" y1="{sy(highs[0])}" '
                      f'y2="{sy(lows[0])}" stroke="{color}" stroke-opacity="0.35" stroke-width="8"/>')
        else:
            el.append(f'<polygon class="band" points="{" ".join(band)}" fill="{color}" fill-opacity="0.18"/>')
    if len(points) > 1:
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(s)} {sy(v)}" for i, (s, v, _, _) in enumerate(points))
        el.append(f'<path class="line" d="{d}" fill="none" stroke="{color}" stroke-width="2.5"/>')
    for s, v, ci, flagged in points:
        tip = f"step {s}: {v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        if flagged:
            el.append(f'<circle cx="{sx(s)}" cy="{sy(v)}" r="8" fill="none" stroke="{FLAG_COLOR}" stroke-width="2.5"/>')
        el.append(f'<circle cx="{sx(s)}" cy="{sy(v)}" r="4.5" fill="{color}"><title>{_e(tip)}</title></circle>')
    return "".join(el) + "</svg>"


def _recipes(board: Board) -> str:
    if not board.stages:
        return "<p>No run names a recipe (manifest key <code>recipe</code>).</p>"
    head = "".join(f"<th>{_e(t)}<br><small>{_e(board.metrics[t])}</small></th>" for t in board.tasks)
    out = [f'<table id="recipes"><thead><tr><th>recipe</th><th>stage</th><th>run</th>{head}</tr></thead><tbody>']
    previous: dict[str, float] = {}
    for i, s in enumerate(board.stages):
        if i == 0 or board.stages[i - 1].recipe != s.recipe:
            previous = {}
        cells = []
        for t in board.tasks:
            if t not in s.final:
                cells.append('<td class="num">—</td>')
                continue
            key, row = s.final[t]
            delta = f" <small>({row.value - previous[t]:+.2f})</small>" if t in previous else ""
            previous[t] = row.value
            cells.append(f'<td class="num" title="{_e(key.checkpoint)}">{_e(fmt_cell(row))}{delta}'
                         f"<br><small>{_e(key.label)}</small></td>")
        out.append(f"<tr><td>{_e(s.recipe)}</td><td>{_e(s.name)}</td><td>{_e(s.run)}</td>{''.join(cells)}</tr>")
    return "\n".join(out) + "</tbody></table><p><small>Each stage's final checkpoint; (±) the change from the " \
                            "recipe's previous stage.</small></p>"


def _provenance(board: Board) -> str:
    cols = ("model", "git_sha", "lm_eval_version", "sampling", "seed", "backend", "time")
    out = ['<table id="provenance"><thead><tr><th>run</th><th>checkpoint</th><th>step</th>'
           + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>"]
    for key in board.keys:
        prov = board.provenance(key)
        vals = [json.dumps(prov[c], sort_keys=True) if isinstance(prov.get(c), (dict, list)) else prov.get(c, "—")
                for c in cols]
        step: Any = "—" if key.step is None else key.step
        out.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (key.run, key.checkpoint, step, *vals)) + "</tr>")
    return "\n".join(out) + "</tbody></table>"


"""The leaderboard as ONE self-contained HTML file: inline CSS and inline SVG drawn here in Python; no
scripts, fonts or images from anywhere, so it opens offline (and in a headless browser in the tests).

    from evalgym.benchmarks.leaderboard import build_board
    from evalgym.benchmarks.leaderboard_html import to_html
    Path("leaderboard.html").write_text(to_html(build_board(rows)))

Sections: the score table (intervals; best per column green; flagged cells with a red ▼; scores that
are not held out marked ⚠ with their overlap; failed evaluations with their error; every cell links to
its samples page), the flag list, the not-held-out and error lists, score vs step (one chart per recipe
and task: each stage with several checkpoints a line with its 95 % band, each stage with one a
horizontal reference band at its level, e.g. a student's curve against its start and its teachers;
runs outside recipes share one chart per task), the recipe comparison (each stage against the stage it
started from), and a provenance table (model, git sha, lm-eval version, sampling, seed, time) -- also as
tooltips on each row and cell. All text is escaped; the only links are to the samples pages beside it.

    samples_page(row, records)      # one evaluation's per-sample records as a page of its own
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any

from evalgym.benchmarks.leaderboard import (Board, baseline, beyond, contamination_note, describe_flag, fmt_cell,
                                            held_out, interval, samples_link)
from evalgym.benchmarks.store import ResultRow

# one colour per run (red is kept for flags); the browser test looks for these pixels
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
FLAG_COLOR = "#d62728"
BEST_BG = "#c6efc0"
PLOT_W, PLOT_H = 440, 240
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
.taint {{ color: #b26b00; font-weight: 700; }}
small.beyond {{ font-weight: 700; }}
td.error {{ color: {FLAG_COLOR}; white-space: normal; max-width: 260px; }}
td.text {{ white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; max-width: 480px;
          vertical-align: top; }}
a {{ color: inherit; }}
.legend span {{ margin-right: 10px; font-size: 12px; }}
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
             f'<span class="flag">▼</span> below its run\'s best by more than its interval; '
             f'<span class="taint">⚠</span> not held out (training saw some of its problems), '
             f'<span class="taint">?</span> overlap unknown; a cell links to its samples.</p>',
             "<h2>Scores</h2>", _table(board, colors),
             "<h2>Flags</h2>", _flags(board), _issues(board),
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
                err = board.error(key, task)
                cells.append(f'<td class="error" title="{_e(err.error)}">error: {_e(err.error[:120])}</td>' if err
                             else '<td class="num">—</td>')
                continue
            ci = interval(row)
            text = f"{row.value:.2f}" + (f' <span class="ci">[{ci[0]:.2f}, {ci[1]:.2f}]</span>' if ci else "")
            link = samples_link(board, row)
            if link:
                text = f'<a href="{_e(link)}">{text}</a>'
            flag = board.flag(key, task)
            cls = "num" + (" best" if board.is_best(key, task) else "") + (" flagged" if flag else "")
            mark = f' <span class="flag" title="{_e(describe_flag(flag))}">▼</span>' if flag else ""
            note = contamination_note(row)
            if note:
                mark += f' <span class="taint" title="{_e(note)}">{"⚠" if held_out(row) is False else "?"}</span>'
            cell_tip = _tip({"metric": row.metric, "n": row.n, "stderr": row.stderr,
                             **{k: row.manifest[k] for k in ("task_version", "verifier_version", "split", "time")
                                if k in row.manifest}, "overlap": note or "0 (held out)"})
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


Point = tuple[int, float, "tuple[float, float] | None", bool]


def _groups(board: Board) -> list[tuple[str, list[str]]]:
    """(chart group, its runs): one group per recipe (its stages in order), one for the other runs."""
    staged = {s.run for s in board.stages}
    out: list[tuple[str, list[str]]] = []
    for recipe in dict.fromkeys(s.recipe for s in board.stages):
        out.append((f"recipe {recipe}", [s.run for s in board.stages if s.recipe == recipe]))
    rest = [r for r in dict.fromkeys(k.run for k in board.keys) if r not in staged]
    if rest:
        out.append(("runs", rest))
    return out


def _plots(board: Board, colors: dict[str, str]) -> str:
    out = []
    names = {s.run: s.name for s in board.stages}
    for group, runs in _groups(board):
        for task in board.tasks:
            flagged = {f.key for f in board.flags if f.task == task}
            series, bands = [], []
            for run in runs:
                pts = [(k, board.cells[(k, task)]) for k in board.keys if k.run == run and (k, task) in board.cells]
                stepped = [(k, r) for k, r in pts if k.step is not None]
                label = names.get(run, run)
                if len(stepped) >= 2:
                    series.append((label, colors[run], [(k.step, r.value, interval(r), k in flagged) for k, r in stepped]))
                elif pts:
                    k, r = max(pts, key=lambda kr: (kr[0].step is not None, kr[0].step or 0))
                    bands.append((label, colors[run], r.value, interval(r)))
            if not series and not bands:
                continue
            svg = svg_plot(series, bands, label=f"{group} · {task}")
            legend = "".join(f'<span><span class="swatch" style="background:{c}"></span>{_e(n)}'
                             f'{"" if any(n == s[0] for s in series) else " (level)"}</span>'
                             for n, c in [(s[0], s[1]) for s in series] + [(b[0], b[1]) for b in bands])
            out.append(f'<figure><figcaption>{_e(group)} · {_e(task)} <small>{_e(board.metrics[task])}</small>'
                       f'</figcaption>{svg}<div class="legend">{legend}</div></figure>')
    if not out:
        return "<p><small>nothing to plot</small></p>"
    return '<div class="plots">' + "\n".join(out) + "</div>"


def svg_plot(series: list[tuple[str, str, list[Point]]],
             bands: list[tuple[str, str, float, tuple[float, float] | None]] = (), *, label: str) -> str:
    """Score vs step: each series (name, colour, points (step, value, interval or None, flagged) in step
    order) a line with its interval band; each reference (name, colour, level, interval) a horizontal
    band across the chart at that level."""
    points = [p for _, _, pts in series for p in pts]
    steps = [p[0] for p in points] or [0, 1]
    lows = [p[2][0] if p[2] else p[1] for p in points] + [b[3][0] if b[3] else b[2] for b in bands]
    highs = [p[2][1] if p[2] else p[1] for p in points] + [b[3][1] if b[3] else b[2] for b in bands]
    y0, y1 = min(lows), max(highs)
    if y0 >= 0 and y1 <= 1:
        y0, y1 = 0.0, 1.0
    elif y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
    x0, x1 = min(steps), max(steps)
    if bands and x0 > 0:
        x0 = 0                     # reference levels are where a stage started: the axis starts at step 0
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
    for s in sorted({x0, max(steps)}):
        el.append(f'<text x="{sx(s)}" y="{PLOT_H - _PAD_B + 14}" text-anchor="middle">{s}</text>')
    el.append(f'<text x="{_PAD_L + iw / 2}" y="{PLOT_H - 4}" text-anchor="middle">step</text>')
    for name, color, level, ci in bands:
        lo, hi = ci if ci else (level, level)
        tip = f"{name}: {level:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if ci else "")
        el.append(f'<rect class="ref" x="{_PAD_L}" y="{sy(hi)}" width="{iw}" height="{max(sy(lo) - sy(hi), 1.5)}" '
                  f'fill="{color}" fill-opacity="0.16"><title>{_e(tip)}</title></rect>'
                  f'<line class="ref" x1="{_PAD_L}" x2="{_PAD_L + iw}" y1="{sy(level)}" y2="{sy(level)}" '
                  f'stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/>')
    for name, color, pts in series:
        st = [p[0] for p in pts]
        lo_s = [p[2][0] if p[2] else p[1] for p in pts]
        hi_s = [p[2][1] if p[2] else p[1] for p in pts]
        if any(p[2] for p in pts):
            band = [f"{sx(s)},{sy(h)}" for s, h in zip(st, hi_s)] + \
                   [f"{sx(s)},{sy(lo)}" for s, lo in reversed(list(zip(st, lo_s)))]
            el.append(f'<polygon class="band" points="{" ".join(band)}" fill="{color}" fill-opacity="0.18"/>')
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(s)} {sy(v)}" for i, (s, v, _, _) in enumerate(pts))
        el.append(f'<path class="line" d="{d}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for s, v, ci, flagged in pts:
            tip = f"{name} step {s}: {v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            if flagged:
                el.append(f'<circle cx="{sx(s)}" cy="{sy(v)}" r="8" fill="none" stroke="{FLAG_COLOR}" '
                          'stroke-width="2.5"/>')
            el.append(f'<circle cx="{sx(s)}" cy="{sy(v)}" r="4.5" fill="{color}"><title>{_e(tip)}</title></circle>')
    return "".join(el) + "</svg>"


def _recipes(board: Board) -> str:
    if not board.stages:
        return "<p>No run names a recipe (manifest key <code>recipe</code>).</p>"
    head = "".join(f"<th>{_e(t)}<br><small>{_e(board.metrics[t])}</small></th>" for t in board.tasks)
    out = [f'<table id="recipes"><thead><tr><th>recipe</th><th>stage</th><th>from</th><th>run</th>{head}</tr>'
           "</thead><tbody>"]
    for s in board.stages:
        ref = baseline(board, s)
        cells = []
        for t in board.tasks:
            if t not in s.final:
                cells.append('<td class="num">—</td>')
                continue
            key, row = s.final[t]
            delta = ""
            if ref is not None and t in ref.final:
                d = row.value - ref.final[t][1].value
                strong = ' class="beyond" title="beyond its 95% interval"' if beyond(row, ref.final[t][1]) else ""
                delta = f" <small{strong}>({d:+.2f} vs {_e(ref.name)})</small>"
            link = samples_link(board, row)
            text = _e(fmt_cell(row))
            if link:
                text = f'<a href="{_e(link)}">{text}</a>'
            taint = contamination_note(row)
            mark = f' <span class="taint" title="{_e(taint)}">{"⚠" if held_out(row) is False else "?"}</span>' if taint else ""
            cells.append(f'<td class="num" title="{_e(key.checkpoint)}">{text}{mark}{delta}'
                         f"<br><small>{_e(key.label)}</small></td>")
        start = s.start or (f"{ref.name} (the row above)" if ref else "—")
        out.append(f"<tr><td>{_e(s.recipe)}</td><td>{_e(s.name)}</td><td>{_e(start)}</td><td>{_e(s.run)}</td>"
                   f"{''.join(cells)}</tr>")
    return "\n".join(out) + "</tbody></table><p><small>Each stage's final checkpoint; (±) its change from the " \
                            "stage it started from (its <code>from</code>).</small></p>"


def _issues(board: Board) -> str:
    parts = []
    tainted = [(k, t, r) for (k, t), r in board.cells.items() if held_out(r) is False]
    unknown = [(k, t, r) for (k, t), r in board.cells.items() if held_out(r) is None and contamination_note(r)]
    if tainted or unknown:
        items = "".join(f'<li><span class="taint">{"⚠" if held_out(r) is False else "?"}</span> {_e(k.run)} '
                        f"{_e(k.label)} on {_e(t)}: {_e(contamination_note(r))}</li>" for k, t, r in tainted + unknown)
        parts.append(f'<h2>Not held out</h2><ul id="tainted">{items}</ul>')
    if board.errors:
        items = "".join(f'<li class="error">{_e(k.run)} {_e(k.label)} on {_e(t)}: {_e(e.error)}</li>'
                        for (k, t), e in board.errors.items())
        parts.append(f'<h2>Errors</h2><ul id="errors">{items}</ul>')
    return "\n".join(parts)


def samples_page(row: ResultRow, records: list[dict[str, Any]]) -> str:
    """One evaluation's per-sample records: the prompt, the response, what was graded, the gold answer and
    the verdict, one row per sample."""
    title = f"{row.run} {row.checkpoint} · {row.task}"
    head = "".join(f"<th>{h}</th>" for h in ("doc", "sample", "prompt", "response", "graded", "answer", "reward",
                                                "verdict"))
    body = []
    for r in records:
        prompt = "\n\n".join(f"[{m.get('role')}] {m.get('content')}" for m in (r.get("prompt") or []))
        transcript = "".join(f"\n\n[{m.get('role')}] {m.get('content')}" for m in (r.get("transcript") or []))
        verdict = {k: r[k] for k in ("correct", "error", "verdict", "metrics", "finish_reason") if r.get(k) not in (None, {}, [])}
        cls = "best" if r.get("correct") else ""
        body.append(f'<tr><td class="num">{_e(r.get("doc"))}</td><td class="num">{_e(r.get("sample"))}</td>'
                    f'<td class="text">{_e(prompt)}</td><td class="text">{_e(str(r.get("completion", "")) + transcript)}'
                    f'</td><td class="text">{_e(r.get("graded", ""))}</td><td class="text">{_e(r.get("answer", ""))}</td>'
                    f'<td class="num {cls}">{_e(r.get("reward"))}</td>'
                    f'<td class="text">{_e(json.dumps(verdict, default=str, indent=1))}</td></tr>')
    meta = fmt_cell(row) + f" ({row.metric}, n={row.n})"
    note = contamination_note(row) or "held out (no overlap with the checkpoint's training)"
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{_e(title)}</title>", f"<style>{_CSS}</style></head><body>",
                      f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(meta)}; {_e(note)}; {len(records)} samples. '
                      f"Settings: {_e(json.dumps(row.manifest.get('settings'), sort_keys=True, default=str))}</p>",
                      f'<table id="samples"><thead><tr>{head}</tr></thead><tbody>', *body,
                      "</tbody></table></body></html>"]) + "\n"


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


"""Leaderboard tables of one protocol: Markdown, CSV, LaTeX (booktabs) and a static HTML page.

Every format shows the same layout: measured rows first (ranked rows sorted by the protocol's headline
metric, then rows that are incomplete or of another protocol version, marked and never bold), then, below
a separator, rows that papers report (from baselines cards), marked "(paper)" with their source. The best
value of each metric column among ranked measured rows is bold; ties at the displayed precision are all bold.
Paper rows never compete for bold: they were not measured here.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from slarm_bench.report import (
    ReportError,
    metric_decimals,
    metric_info,
    metric_label,
    order_keys,
    paper_rows,
)
from slarm_bench.results import atomic_write_text

DASH = "–"
# Identifier, status, metric and timing columns of leaderboard.csv (machine paths are left out on purpose:
# the file is committed).
_CSV_HEAD = ["protocol", "protocol_version", "scene_list_hash", "paper", "model", "preset", "checkpoint",
             "complete", "ranked", "status", "windows_finished", "windows_total", "missing_scenes"]
_CSV_TAIL = ["reconstruct_ms", "render_ms", "stream_step_ms", "latency_ms", "peak_memory_bytes", "git_commit",
             "git_dirty", "gpu", "device", "timed_on", "backend", "torch", "slarm_bench", "checkpoint_sha256", "source"]


@dataclass
class Layout:
    """What every format renders: columns, rows and which cells are bold."""

    protocol: str
    info: dict[str, Any]
    keys: list[str]
    measured: list[dict[str, Any]] = field(default_factory=list)
    paper: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, set[int]] = field(default_factory=dict)
    show_step: bool = False
    show_memory: bool = False
    info_text: str = ""

    def header(self, key: str, arrows: bool = True) -> tuple[str, str, str]:
        """(label, arrow, unit) of a metric column."""
        info = self.info[key]
        return metric_label(key), ("↑" if info.higher_is_better else "↓") if arrows else "", info.unit


def _finite(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and not pd.isna(x)


def build_layout(df: pd.DataFrame, protocol: str, paper: pd.DataFrame) -> Layout:
    sub = df[df["protocol"] == protocol] if "protocol" in df and not df.empty else df
    headline = str(sub["headline"].iloc[0]) if "headline" in sub and not sub.empty else "psnr"
    measured_keys = [c[:-5] for c in sub.columns if c.endswith("_mean") and sub[c].notna().any()]
    paper_keys = [c[:-5] for c in paper.columns if c.endswith("_mean") and paper[c].notna().any()]
    keys = order_keys(measured_keys + paper_keys, headline)
    info = {k: metric_info(df, k) for k in keys}
    lay = Layout(protocol, info, keys)
    if not sub.empty:
        first = sub.iloc[0]
        lay.info_text = (f"{first.get('dataset')}/{first.get('split')}, {first.get('num_scenes')} scenes, "
                         f"protocol v{first.get('protocol_version')}, scene list sha256 "
                         f"{str(first.get('scene_list_hash'))[:12]}, mode {first.get('mode')}; headline: "
                         f"{metric_label(headline)}")
    else:
        lay.info_text = f"headline: {metric_label(headline)}"
    sign = -1.0 if headline in info and info[headline].higher_is_better else 1.0
    hcol = f"{headline}_mean"

    def order(row: pd.Series) -> tuple:
        value = row.get(hcol, math.nan)
        return (not bool(row["ranked"]), math.inf if not _finite(value) else sign * float(value),
                str(row["preset"]), str(row["checkpoint"]))

    rows = sorted((r for _, r in sub.iterrows()), key=order)
    for r in rows:
        lay.measured.append({
            "model": str(r["preset"]), "checkpoint": str(r["checkpoint"]), "ranked": bool(r["ranked"]),
            "status": str(r["status"]),
            "values": {k: (r.get(f"{k}_mean", math.nan), r.get(f"{k}_std", math.nan)) for k in keys},
            "latency_ms": r.get("latency_ms", math.nan), "step_ms": r.get("stream_step_ms", math.nan),
            "mixed_devices": bool(r.get("mixed_devices", False)), "timed_on": str(r.get("timed_on") or ""),
            "memory_gib": (r["peak_memory_bytes"] / 2**30 if _finite(r.get("peak_memory_bytes"))
                           and r["peak_memory_bytes"] > 0 else math.nan),
        })
    lay.show_step = any(_finite(m["step_ms"]) for m in lay.measured)
    lay.show_memory = any(_finite(m["memory_gib"]) for m in lay.measured)
    for _, p in paper.iterrows():
        lay.paper.append({"model": f"{p['model']} (paper)", "source": str(p["source"]),
                          "values": {k: (p.get(f"{k}_mean", math.nan), math.nan) for k in keys}})
    for k in keys:
        dec = metric_decimals(k)
        cands = {i: round(float(m["values"][k][0]), dec) for i, m in enumerate(lay.measured)
                 if m["ranked"] and _finite(m["values"][k][0])}
        if cands:
            best = max(cands.values()) if info[k].higher_is_better else min(cands.values())
            lay.best[k] = {i for i, v in cands.items() if v == best}
    return lay


def _value(key: str, mean: Any, std: Any) -> tuple[str, str | None] | None:
    """(mean, std or None) as text at the key's precision; None when the mean is undefined."""
    if not _finite(mean):
        return None
    dec = metric_decimals(key)
    return f"{float(mean):.{dec}f}", (f"{float(std):.{dec}f}" if _finite(std) else None)


def _plain(x: Any, dec: int) -> str:
    return f"{float(x):.{dec}f}" if _finite(x) else DASH


# ---------------------------------------------------------------------------------------------------------
# Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(lay: Layout) -> str:
    metric_heads = [f"{label} {arrow}" + (f" ({unit})" if unit else "") for label, arrow, unit in
                    (lay.header(k) for k in lay.keys)]
    extra = ["Latency ↓ (ms)"] + (["Step ↓ (ms)"] if lay.show_step else []) + \
        (["Peak mem ↓ (GiB)"] if lay.show_memory else [])
    head = ["Model", "Checkpoint", "Status"] + metric_heads + extra
    lines = [f"# Leaderboard: {lay.protocol}", "", lay.info_text + ".", "",
             "↑ higher is better, ↓ lower is better. Values are mean ± std over images (pixel-weighted means "
             "for scene flow). **Bold**: best among complete rows. Latency: median reconstruct (or streaming "
             "step) + median render of one timestep.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for i, m in enumerate(lay.measured):
        cells = [_md_escape(m["model"]), f"`{m['checkpoint']}`",
                 "complete" if m["ranked"] else f"*{_md_escape(m['status'])}*"]
        for k in lay.keys:
            v = _value(k, *m["values"][k])
            if v is None:
                cells.append(DASH)
                continue
            mean = f"**{v[0]}**" if i in lay.best.get(k, ()) else v[0]
            cells.append(mean + (f" ± {v[1]}" if v[1] is not None else ""))
        cells.append(_plain(m["latency_ms"], 1) + (" †" if m["mixed_devices"] else ""))
        if lay.show_step:
            cells.append(_plain(m["step_ms"], 1))
        if lay.show_memory:
            cells.append(_plain(m["memory_gib"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    mixed = [m for m in lay.measured if m["mixed_devices"]]
    if mixed:
        lines += [""] + [f"† {_md_escape(m['model'])} (`{m['checkpoint']}`): windows scored on more than one "
                         f"device ({_md_escape(m['timed_on'])}); its latency is that of the last run that "
                         "timed windows." for m in mixed]
    if lay.paper:
        lines += ["", "---", "", "**Reported in papers** (not measured here; from the baselines cards):", "",
                  "| " + " | ".join(["Model"] + metric_heads + ["Source"]) + " |",
                  "|" + "|".join(["---"] + ["---:"] * len(metric_heads) + ["---"]) + "|"]
        for p in lay.paper:
            cells = [_md_escape(p["model"])]
            for k in lay.keys:
                v = _value(k, *p["values"][k])
                cells.append(DASH if v is None else v[0])
            lines.append("| " + " | ".join(cells + [_md_escape(p["source"])]) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# LaTeX (booktabs)
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "–": "--", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(lay: Layout) -> str:
    heads = []
    for label, arrow, unit in (lay.header(k) for k in lay.keys):
        tex_arrow = r"$\uparrow$" if arrow == "↑" else r"$\downarrow$"
        heads.append(f"{tex_escape(label)}{' (' + tex_escape(unit) + ')' if unit else ''} {tex_arrow}")
    extra = [r"Latency (ms) $\downarrow$"] + ([r"Step (ms) $\downarrow$"] if lay.show_step else []) + \
        ([r"Mem.\ (GiB) $\downarrow$"] if lay.show_memory else [])
    ncols = 3 + len(heads) + len(extra)
    out = [f"% slarm-bench leaderboard: {tex_escape(lay.protocol)}; {tex_escape(lay.info_text)}",
           "% Needs \\usepackage{booktabs}. Bold: best among complete rows; (paper) rows not measured here.",
           r"\begin{tabular}{lll" + "r" * (ncols - 3) + "}", r"\toprule",
           " & ".join(["Model", "Checkpoint", "Status"] + heads + extra) + r" \\", r"\midrule"]
    for i, m in enumerate(lay.measured):
        cells = [tex_escape(m["model"]), r"\texttt{" + tex_escape(m["checkpoint"]) + "}",
                 "complete" if m["ranked"] else r"\textit{" + tex_escape(m["status"]) + "}"]
        for k in lay.keys:
            v = _value(k, *m["values"][k])
            if v is None:
                cells.append("--")
                continue
            mean = r"\textbf{" + v[0] + "}" if i in lay.best.get(k, ()) else v[0]
            cells.append(mean + (r" $\pm$ " + v[1] if v[1] is not None else ""))
        cells.append(tex_escape(_plain(m["latency_ms"], 1)))
        if lay.show_step:
            cells.append(tex_escape(_plain(m["step_ms"], 1)))
        if lay.show_memory:
            cells.append(tex_escape(_plain(m["memory_gib"], 2)))
        out.append(" & ".join(cells) + r" \\")
    if lay.paper:
        out += [r"\midrule",
                r"\multicolumn{" + str(ncols) + r"}{l}{\emph{Reported in papers (not measured here)}} \\",
                r"\midrule"]
        for p in lay.paper:
            cells = [tex_escape(p["model"]), "", "paper"]
            for k in lay.keys:
                v = _value(k, *p["values"][k])
                cells.append("--" if v is None else v[0])
            cells += [""] * len(extra)
            out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if lay.paper:
        out.append(r"\par\footnotesize Sources: " + "; ".join(
            f"{tex_escape(p['model'])}: {tex_escape(p['source'])}" for p in lay.paper) + ".")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------
# CSV
def to_csv_frame(df: pd.DataFrame, lay: Layout, paper: pd.DataFrame) -> pd.DataFrame:
    """Measured rows (in the table's order) then paper rows, with raw numbers at full precision."""
    sub = df[df["protocol"] == lay.protocol].copy() if not df.empty else df.copy()
    sub["paper"] = False
    sub["model"] = sub["preset"]
    sub["source"] = "measured"
    order = {(m["model"], m["checkpoint"]): i for i, m in enumerate(lay.measured)}
    sub = sub.assign(_o=[order.get((str(p), str(c)), 0) for p, c in zip(sub["preset"], sub["checkpoint"])])
    sub = sub.sort_values("_o", kind="stable").drop(columns="_o")
    metric_cols = [f"{k}_{s}" for k in lay.keys for s in ("mean", "std", "count")]
    pap = paper.copy()
    pap["paper"] = True
    pap["protocol"] = lay.protocol
    frame = pd.concat([sub, pap], ignore_index=True, sort=False) if not pap.empty else sub
    cols = _CSV_HEAD + metric_cols + _CSV_TAIL
    for c in cols:
        if c not in frame:
            frame[c] = math.nan
    frame = frame[cols].copy()
    # Paper rows have no counts or versions: keep integer columns integers (empty cells, not 1.0).
    ints = ["protocol_version", "windows_finished", "windows_total", "missing_scenes"] + \
        [f"{k}_count" for k in lay.keys]
    for c in ints:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").round().astype("Int64")
    return frame


# ---------------------------------------------------------------------------------------------------------
# HTML (static, self-contained: inline CSS, plots as data URIs, no script)
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:14px;margin:1em 0}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{border-bottom:2px solid #333;background:#f6f6f6}
td.l,th.l{text-align:left}
tr.incomplete td{color:#888;font-style:italic}
tr.sep td{border-top:2px solid #333;background:#fafafa;text-align:left;font-style:italic}
tr.paper td{color:#555}
.std{color:#888;font-size:12px}
.note{color:#555;font-size:13px;max-width:70em}
img{max-width:48%;margin-right:1%}
"""


def _h(text: Any) -> str:
    return html.escape(str(text))


def to_html(lay: Layout, plots: list[Path], scenes: pd.DataFrame | None) -> str:
    metric_heads = []
    for label, arrow, unit in (lay.header(k) for k in lay.keys):
        metric_heads.append(f"{_h(label)} {arrow}" + (f"<br><small>{_h(unit)}</small>" if unit else ""))
    extra = ["Latency ↓<br><small>ms</small>"] + (["Step ↓<br><small>ms</small>"] if lay.show_step else [])
    extra += ["Peak mem ↓<br><small>GiB</small>"] if lay.show_memory else []
    heads = ['<th class="l">Model</th>', '<th class="l">Checkpoint</th>', '<th class="l">Status</th>']
    heads += [f"<th>{h}</th>" for h in metric_heads + extra]
    body = []
    for i, m in enumerate(lay.measured):
        cells = [f'<td class="l">{_h(m["model"])}</td>',
                 f'<td class="l"><code>{_h(m["checkpoint"])}</code></td>',
                 f'<td class="l">{"complete" if m["ranked"] else _h(m["status"])}</td>']
        for k in lay.keys:
            v = _value(k, *m["values"][k])
            if v is None:
                cells.append(f"<td>{DASH}</td>")
                continue
            mean = f"<strong>{v[0]}</strong>" if i in lay.best.get(k, ()) else v[0]
            std = f' <span class="std">± {v[1]}</span>' if v[1] is not None else ""
            cells.append(f"<td>{mean}{std}</td>")
        cells.append(f"<td>{_plain(m['latency_ms'], 1)}</td>")
        if lay.show_step:
            cells.append(f"<td>{_plain(m['step_ms'], 1)}</td>")
        if lay.show_memory:
            cells.append(f"<td>{_plain(m['memory_gib'], 2)}</td>")
        cls = "" if m["ranked"] else ' class="incomplete"'
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    if lay.paper:
        body.append(f'<tr class="sep"><td colspan="{len(heads)}">Reported in papers (not measured here)'
                    "</td></tr>")
        for p in lay.paper:
            cells = [f'<td class="l" title="{_h(p["source"])}">{_h(p["model"])}</td>', "<td></td>",
                     '<td class="l">paper</td>']
            for k in lay.keys:
                v = _value(k, *p["values"][k])
                cells.append(f"<td>{DASH if v is None else v[0]}</td>")
            cells += ["<td></td>"] * len(extra)
            body.append(f'<tr class="paper">{"".join(cells)}</tr>')
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>slarm-bench leaderboard: {_h(lay.protocol)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Leaderboard: {_h(lay.protocol)}</h1>", f'<p class="note">{_h(lay.info_text)}.</p>',
             "<table><thead><tr>" + "".join(heads) + "</tr></thead><tbody>", *body, "</tbody></table>",
             '<p class="note">↑ higher is better, ↓ lower is better; mean ± std over images (pixel-weighted '
             "means for scene flow). Bold: best among complete rows; greyed rows are incomplete or of "
             "another protocol version and never ranked. Latency: median reconstruct (or streaming step) "
             "+ median render of one timestep.</p>"]
    if lay.paper:
        parts.append('<p class="note">Sources of the (paper) rows:</p><ul class="note">')
        parts += [f"<li>{_h(p['model'])}: {_h(p['source'])}</li>" for p in lay.paper]
        parts.append("</ul>")
    for plot in plots:
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{_h(plot.stem)}" src="data:image/png;base64,{data}">')
    if scenes is not None and not scenes.empty and lay.keys and lay.keys[0] in scenes:
        key = lay.keys[0]
        pivot = scenes.assign(model=scenes["preset"] + " " + scenes["checkpoint"]).pivot_table(
            index="scene", columns="model", values=key, aggfunc="first")
        dec = metric_decimals(key)
        rows = ["<tr>" + f'<td class="l">{_h(s)}</td>' + "".join(f"<td>{_plain(v, dec)}</td>" for v in r)
                + "</tr>" for s, r in pivot.iterrows()]
        parts += [f"<details><summary>Per-scene {_h(metric_label(key))} (all metrics in per_scene.csv)"
                  "</summary><table><thead><tr><th class=\"l\">scene</th>"
                  + "".join(f"<th>{_h(c)}</th>" for c in pivot.columns) + "</tr></thead><tbody>",
                  *rows, "</tbody></table></details>"]
    parts.append('<p class="note">Files: leaderboard.csv (every number at full precision, with provenance), '
                 "leaderboard.md, leaderboard.tex, per_scene.csv.</p></body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
def render_tables(df: pd.DataFrame, out_dir: str | os.PathLike, protocol: str,
                  baselines: pd.DataFrame | str | os.PathLike | None = None,
                  scenes: pd.DataFrame | None = None, plots: bool = True) -> list[Path]:
    """Write leaderboard.md, .csv, .tex, index.html (+ per_scene.csv, PNG plots) of `protocol` to `out_dir`.

    `df` comes from load_results; `baselines` is a frame from paper_rows, a baselines folder to read cards
    from, or None for no paper rows; `scenes` is per_scene's frame. Returns the paths written.
    """
    from slarm_bench.report_plots import write_plots

    if baselines is None:
        paper = pd.DataFrame(columns=["protocol", "card", "model", "source"])
    elif isinstance(baselines, pd.DataFrame):
        paper = baselines
    else:
        paper = paper_rows(baselines, protocol)
    sub = df[df["protocol"] == protocol] if "protocol" in df and not df.empty else df.iloc[0:0]
    if sub.empty and paper.empty:
        raise ReportError(f"nothing to report for protocol {protocol!r}: no results and no paper rows")
    lay = build_layout(df, protocol, paper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    headline = str(sub["headline"].iloc[0]) if "headline" in sub and not sub.empty else "psnr"
    png = write_plots(sub, out, headline) if plots and not sub.empty else []

    def put(name: str, text: str) -> None:
        atomic_write_text(out / name, text)
        written.append(out / name)

    put("leaderboard.md", to_markdown(lay))
    put("leaderboard.csv", to_csv_frame(df, lay, paper).to_csv(index=False))
    put("leaderboard.tex", to_latex(lay))
    put("index.html", to_html(lay, png, scenes))
    if scenes is not None:
        put("per_scene.csv", scenes.to_csv(index=False))
    return written + png

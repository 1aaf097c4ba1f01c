"""The report's pages: `index.html` (one file, inline CSS, relative links to its files; run ids link to the MLflow
UI) and `README.md`, same content."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from beyond_gd.report.claims import headline
from beyond_gd.report.registry import CHECK, MEASURED, OUTCOMES

TITLE = "Beyond Gradient Descent (Fundamentals of Deep Learning, ch. 6): the figures, measured"


class Link(NamedTuple):
    """Text that links to `url` on the pages (plain text where `url` is empty)."""

    text: str
    url: str = ""


Pieces = tuple["str | Link", ...]  # a sentence, some of its words links
RenderedTable = dict[str, str]  # "html" and "md": a table as each page writes it


def plain(pieces: Pieces) -> str:
    """The sentence's text, its links as their text."""
    return "".join(p.text if isinstance(p, Link) else p for p in pieces)


def _html(pieces: Pieces) -> str:
    e = html.escape
    return "".join(f'<a href="{e(p.url)}">{e(p.text)}</a>' if isinstance(p, Link) and p.url else
                   e(p.text if isinstance(p, Link) else p) for p in pieces)


def _markdown(pieces: Pieces) -> str:
    return "".join(f"[{p.text}]({p.url})" if isinstance(p, Link) and p.url else
                   (p.text if isinstance(p, Link) else p) for p in pieces)


def _runs_note(mlflow_ui: str) -> str:
    """What the pages say of the MLflow runs named under each figure (`mlflow_ui`: where their links point)."""
    where = (f"each run id links to the run in the MLflow UI at {mlflow_ui}, which `make ui` serves over this "
             "checkout's store" if mlflow_ui else "`make ui` opens them")
    return f"Under each figure, MLflow names the runs whose artifacts it draws ({where})."


@dataclass(frozen=True)
class PageFigure:
    name: str
    title: str
    shows: str
    book: str
    measured: str
    files: Mapping[str, str]  # format -> path relative to the page
    runs: Pieces  # the MLflow runs whose artifacts it draws, their ids linked to the UI
    table: RenderedTable | None = None  # its table as each page shows it (`render_table`)
    claims: tuple[str, ...] = ()  # the ids of the claims shown under it

    @property
    def drawn(self) -> bool:
        """False for a figure whose data did not run in this profile: `measured` says why, no files."""
        return bool(self.files)

    @property
    def image(self) -> str:
        """What the page shows: the PNG where there is one (light, everywhere), else the first file."""
        return self.files.get("png") or self.files.get("svg") or next(iter(self.files.values()))


def html_page(figures: Sequence[PageFigure], claims: pd.DataFrame, provenance: Mapping[str, str],
              inputs: pd.DataFrame, mlflow_ui: str = "") -> str:
    e = html.escape
    toc = "".join(f'<li><a href="#{e(f.name)}">{e(f.title)}</a>{"" if f.drawn else " (not drawn)"}</li>'
                  for f in figures)
    body = [f"<h1>{e(TITLE)}</h1>",
            "<p>Every figure is drawn from the pipeline's cached artifacts (no model is trained here); each "
            "caption says what the figure shows, what the book claims and what we measured. "
            + e(VERDICTS_NOTE) + " " + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(_runs_note(mlflow_ui))) +
            "</p>",
            '<nav><ol><li><a href="#verdicts">Verdicts</a></li>' + toc + '<li><a href="#claims">All claims</a></li>'
            '<li><a href="#provenance">Provenance</a></li></ol></nav>',
            f'<section id="verdicts"><h2>Verdicts: {e(headline(claims))}</h2>{_verdict_summary(claims, figures)}'
            "</section>"]
    by_id = claims.set_index("id", drop=False)
    for f in figures:
        links = " · ".join(f'<a href="{e(path)}">{e(fmt.upper())}</a>' for fmt, path in f.files.items())
        table = f.table["html"] if f.table is not None else ""
        image = (f'<img src="{e(f.image)}" alt="{e(f.title)}" loading="lazy">' if f.drawn else
                 f'<p class=notdrawn><b>Not drawn:</b> {e(f.measured)}</p>')
        measured = f"<p><b>Measured:</b> {e(f.measured)}</p>" if f.drawn else ""
        verdicts = (f"<h3>Its claims</h3>{_claims_table(by_id.loc[list(f.claims)], brief=True)}" if f.claims else "")
        body.append(
            f'<figure id="{e(f.name)}"><h2>{e(f.title)}</h2>{image}'
            f"<figcaption><p><b>Shows:</b> {e(f.shows)}</p><p><b>Book:</b> {e(f.book)}</p>"
            f"{measured}<p class=files>{links + ' · ' if links else ''}MLflow: {_html(f.runs)}</p>"
            f"</figcaption>{table}{verdicts}</figure>")
    body.append('<section id="claims"><h2>All claims</h2><p>Also as <a href="claims.csv">claims.csv</a>. '
                + e(COLUMNS_NOTE) + "</p>" + _claims_table(claims) + "</section>")
    prov = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in provenance.items())
    body.append(f'<section id="provenance"><h2>Provenance</h2><table class=prov>{prov}</table>'
                f"<h3>Inputs read</h3>{_html_table(inputs)}</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(TITLE)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def markdown_page(figures: Sequence[PageFigure], claims: pd.DataFrame, provenance: Mapping[str, str],
                  inputs: pd.DataFrame, mlflow_ui: str = "") -> str:
    lines = [f"# {TITLE}", "",
             "Drawn from the pipeline's cached artifacts by the `report` stage; the same content as "
             "[index.html](index.html). " + VERDICTS_NOTE + " " + _runs_note(mlflow_ui), ""]
    lines += ["- [Verdicts](#verdicts)"] + [f"- [{f.title}](#{f.name})" + ("" if f.drawn else " (not drawn)")
                                           for f in figures] + ["- [All claims](#all-claims)",
                                                                "- [Provenance](#provenance)", ""]
    lines += ['<a id="verdicts"></a>', "", f"## Verdicts: {headline(claims)}", "",
              _md_table(_summary_rows(claims, figures)), ""]
    by_id = claims.set_index("id", drop=False)
    for f in figures:
        links = ", ".join(f"[{fmt.upper()}]({path})" for fmt, path in f.files.items())
        image, measured = ((f"![{f.title}]({f.image})", f"**Measured:** {f.measured}") if f.drawn else
                           (f"**Not drawn:** {f.measured}", None))
        lines += [f'<a id="{f.name}"></a>', "", f"## {f.title}", "", image, "", f"**Shows:** {f.shows}", "",
                  f"**Book:** {f.book}", "", *([measured, ""] if measured else []),
                  (f"Files: {links}. " if links else "") + f"MLflow: {_markdown(f.runs)}", ""]
        if f.table is not None:
            lines += [f.table["md"], ""]
        if f.claims:
            lines += ["Its claims:", "", _md_table(_brief(by_id.loc[list(f.claims)])), ""]
    lines += ["## All claims", "", "Also as [claims.csv](claims.csv). " + COLUMNS_NOTE, "",
              _md_table(_full(claims)), "", "## Provenance", ""]
    lines += [f"- **{k}**: {v}" for k, v in provenance.items()] + ["", "Inputs read:", "", _md_table(inputs), ""]
    return "\n".join(lines)


VERDICTS_NOTE = ("A measured claim's verdict (agrees, partly, differs) is computed from the artifacts against its "
                 "stated tolerance, then decided again on bootstrap resamples of what the run drew at random "
                 "(seeds, random starts): P(verdict) is the share of resamples that repeat it, the margin the "
                 "deciding statistic's distance to its nearest threshold in its spreads. Too low either reads "
                 "inconclusive, with what would settle it; missing data reads not measured. Checks (maths the code "
                 "must reproduce: closed forms, identities, constructed toys) hold or fail, counted apart.")
COLUMNS_NOTE = ("P: P(verdict); margin: in spreads of the deciding statistic (∞: no spread, –: none); seeds: units "
                "resampled.")


def _fmt(value: float, spec: str = ".2f") -> str:
    """P or a margin as the tables show it: a margin past 100 spreads is as settled as one at 100."""
    if pd.isna(value):
        return "–"
    return "∞" if value == float("inf") else "> 100" if value > 100 else format(value, spec)


def _brief(claims: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"claim": claims["book"], "kind": claims["kind"], "verdict": claims["verdict"],
                         "P": claims["p_verdict"].map(_fmt), "margin": claims["margin"].map(_fmt),
                         "seeds": claims["seeds"], "note": claims["note"]})


def _full(claims: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"figure": claims["figure"], "source": claims["source"], **_brief(claims),
                         "measured": claims["measured"], "tolerance": claims["tolerance"]})


def _summary_rows(claims: pd.DataFrame, figures: Sequence[PageFigure]) -> pd.DataFrame:
    """Measured claims by verdict, then checks: one line per claim with where it is shown."""
    where = {c: f for f in figures for c in f.claims}
    order = {v: k for k, v in enumerate((*OUTCOMES[MEASURED], *OUTCOMES[CHECK]))}
    rows = claims.assign(_k=(claims["kind"] != MEASURED).astype(int), _v=claims["verdict"].map(order))
    rows = rows.sort_values(["_k", "_v"], kind="stable")
    return pd.DataFrame({"kind": rows["kind"], "verdict": rows["verdict"], "claim": rows["book"],
                         "P": rows["p_verdict"].map(_fmt), "margin": rows["margin"].map(_fmt),
                         "figure": [where[c].title.split(".")[0] if c in where else "" for c in rows["id"]]})


def _verdict_summary(claims: pd.DataFrame, figures: Sequence[PageFigure]) -> str:
    e = html.escape
    where = {c: f.name for f in figures for c in f.claims}
    rows = _summary_rows(claims, figures).assign(id=claims["id"])
    body = "".join(f'<tr><td>{e(r.kind)}</td><td class="verdict {_css(r.verdict)}">{e(r.verdict)}</td>'
                   f'<td><a href="#{e(where.get(r.id, "claims"))}">{e(r.claim)}</a></td><td>{e(r.P)}</td>'
                   f"<td>{e(r.margin)}</td></tr>" for r in rows.itertuples())
    head = "".join(f"<th>{c}</th>" for c in ("kind", "verdict", "claim", "P", "margin"))
    return f"<table class=claims><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _css(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _claims_table(claims: pd.DataFrame, brief: bool = False) -> str:
    """The claims with verdict, P and margin; the full table adds where each comes from, what was measured
    and its tolerance, the tolerance folded (it is long)."""
    e = html.escape
    cols = ["claim", "kind", "verdict", "P", "margin", "seeds", "note"] + ([] if brief else ["measured", "tolerance"])
    head = "".join(f"<th>{e(c)}</th>" for c in (cols if brief else ["figure", "source", *cols]))
    rows = []
    for r in claims.itertuples():
        cells = ([] if brief else [r.figure, r.source]) + [r.book, r.kind]
        tds = "".join(f"<td>{e(str(v))}</td>" for v in cells)
        tds += f'<td class="verdict {_css(r.verdict)}">{e(r.verdict)}</td>'
        tds += "".join(f"<td>{e(str(v))}</td>" for v in (_fmt(r.p_verdict), _fmt(r.margin), r.seeds, r.note))
        if not brief:
            tds += (f"<td>{e(r.measured)}</td><td><details><summary>tolerance</summary>{e(r.tolerance)}"
                    "</details></td>")
        rows.append(f"<tr>{tds}</tr>")
    return f"<table class=claims><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_table(frame: pd.DataFrame) -> RenderedTable:
    """A figure's table as the HTML and Markdown pages show it: text, so a figure kept from the last run
    (beyond_gd.report.build) keeps it exactly."""
    return {"html": _html_table(frame), "md": _md_table(frame)}


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="data")


def _md_table(frame: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
figure{margin:0 0 2.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption p{margin:.3em 0}.files{font-size:.85em;color:#666}
table{border-collapse:collapse;font-size:.85em;margin:.8em 0}th,td{border:1px solid #ddd;padding:.3em .5em;
vertical-align:top;text-align:left}thead th{background:#f4f4f4}
.verdict{font-weight:bold}.agrees{background:#e3f4e1;color:#1b5e20}.partly{background:#fff4d6;color:#7a5200}
.differs,.fails{background:#fde2e1;color:#8e1b13}.holds{background:#e3f4e1;color:#1b5e20}
.inconclusive{background:#ececf6;color:#3a3a6e}.not-measured{background:#f4f4f4;color:#555}
.notdrawn{padding:.6em .8em;background:#f4f4f4;border:1px dashed #bbb}.prov th{background:#f7f7f7;white-space:nowrap}
"""

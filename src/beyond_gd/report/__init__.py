"""The report: every figure of the chapter and a claims check, drawn from cached artifacts only.

- `artifacts`: the upstream stages' output folders, read through declared needs (a `View` per entry).
- `registry`: what a figure and a claim are (`FigureSpec`, `Claim`, `VERDICTS`) and the lists they register
  in (`FIGURES`, `CLAIMS`); it imports no figure.
- `figures`: one module per figure, holding its drawing, its caption and the claims that belong to it;
  importing the package imports them all in page order, so `FIGURES` and `CLAIMS` read from it are whole.
- `claims`: the comparators that give verdicts, and `check_claims`, which runs every claim.
- `axes`, `text`: axis helpers and number formats shared by several figures.
- `page`: `index.html` and `README.md`.
- `build`: draws every figure, checks every claim, writes the pages.
- `style`: the one look of every figure, from `report.style`.

Nothing here trains or evaluates a model, and nothing imports a stage or the
training code: the report reads CSV, JSON and NPZ files; the statistics it
shares with the studies come from `beyond_gd.measures`.
"""

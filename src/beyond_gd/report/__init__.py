"""The report: every figure of the chapter and a claims check, drawn from cached artifacts only.

- `artifacts`: the upstream stages' output folders, read through declared needs.
- `figures`: the figure registry (`FIGURES`); one module per figure holds its drawing, its caption and the
  claims that belong to it, so importing `figures` registers every figure and every claim.
- `claims`: the claim machinery (`CLAIMS`, `VERDICTS`, the comparators, `evaluate`).
- `axes`, `text`: axis helpers and number formats shared by several figures.
- `page`: `index.html` and `README.md`.
- `build`: draws every figure, evaluates every claim, writes the pages.
- `style`: the one look of every figure, from `report.style`.

Nothing here trains or evaluates a model, and nothing imports a stage or the
training code: the report reads CSV, JSON and NPZ files; the statistics it
shares with the studies come from `beyond_gd.measures`.
"""

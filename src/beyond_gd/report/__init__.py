"""The report: every figure of the chapter and a claims check, drawn from cached artifacts only.

- `artifacts`: the upstream stages' output folders, read through declared needs.
- `figures`: the figure registry (`FIGURES`), one entry per figure.
- `claims`: the claim registry (`CLAIMS`), one entry per claim, with comparators.
- `page`: `index.html` and `README.md`.
- `build`: draws every figure, evaluates every claim, writes the pages.
- `style`: the one look of every figure, from `report.style`.

Nothing here trains or evaluates a model, and nothing imports a stage or the
training code: the report reads CSV, JSON and NPZ files.
"""

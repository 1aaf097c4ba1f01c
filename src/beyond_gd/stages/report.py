"""Stage `report`: every figure of the chapter and the claims check, from the earlier stages' artifacts only.

Outputs in reports/ (kept in git, so the figures show on a code host):
`figures/` (PNG and SVG), `claims.csv`, `index.html`, `README.md`, and
`metrics.json` (how many claims agree, partly agree, differ). Everything it
writes is also kept as its MLflow run's artifacts. It trains nothing: a change
under `report.*` re-runs it alone, and it redraws only the figures whose
inputs, style or code changed (the others are kept from `figures/`, which
persists, by the key each one's entry in `figures/drawn.json` holds).
"""

from beyond_gd.report.build import inputs as report_inputs
from beyond_gd.stage import Stage, main
from beyond_gd.studies import report

STAGE = Stage(
    "report", report.Config, report.run, __doc__,
    inputs=report_inputs(), out="reports", log_outputs=True,
    outputs=("figures", "claims.csv", "index.html", "README.md", "metrics.json"), keeps=("figures",),
)

if __name__ == "__main__":
    main(STAGE)

"""Stage `update_rules`: the chapter's update rules beside torch.optim, and Adam's bias, as artifacts.

Outputs in data/update_rules: `findings.csv` (each rule from the chapter's
equations against its torch.optim call on one gradient stream: the largest
difference, and whether the algebra says they are the same), `adam_bias.csv`
(E[m_i] / E[g] and E[v_i] / E[g^2] measured beside 1 - beta1^i and 1 - beta2^i), `summary.json` and `metrics.json`.
"""

from beyond_gd.stage import Plot, Stage, main
from beyond_gd.studies import update_rules

STAGE = Stage(
    "update_rules", update_rules.Config, update_rules.run, __doc__,
    outputs=("findings.csv", "adam_bias.csv", "summary.json", "metrics.json"),
    plots=(Plot("Adam: second-moment bias E[v_i] / E[g^2] against 1 - beta2^i", "step",
                {"adam_bias.csv": ("measured", "theory")}),),
)

if __name__ == "__main__":
    main(STAGE)

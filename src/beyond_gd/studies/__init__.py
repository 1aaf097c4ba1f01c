"""The studies: each a `Config` and a pure `run(cfg, inputs) -> Result` (beyond_gd.study), one per stage."""

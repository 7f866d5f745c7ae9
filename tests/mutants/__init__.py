"""make mutants: the curated mutation run (run.py) and its table (mutants.toml)."""

"""MLflow runs of a study -> polars frames -> Table 2-style tables and seaborn plots. No torch here."""

"""spml_lightning."""

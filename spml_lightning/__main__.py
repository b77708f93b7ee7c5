"""``python -m spml_lightning`` is the ``spml`` command (same output, same exit statuses)."""

from spml_lightning.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

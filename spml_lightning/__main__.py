"""``python -m spml_lightning`` is the ``spml`` command."""

from spml_lightning.cli import main

if __name__ == "__main__":
    main()

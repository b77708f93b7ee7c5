"""fit -> validate -> test with the spml CLI in one process per rank.

Lightning's DDP launcher starts the other ranks by running this same script
again, so every rank goes through the same three commands; the process group
is set up once. Usage: python tests/ddp_driver.py <spml arguments shared by the three commands>
"""

import sys

from spml_lightning.cli import run_cli

if __name__ == "__main__":
    args = sys.argv[1:]
    run_cli(["fit", *args])
    run_cli(["validate", *args, "--ckpt_path", "last"])
    run_cli(["test", *args, "--ckpt_path", "best"])

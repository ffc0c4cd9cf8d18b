"""``python -m girl_lib.world OUT_DIR [--profile smoke] [--seed 0] [--seekers N] [--jobs M]``."""
from .build import main

main()

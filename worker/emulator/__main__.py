"""Run the Coda API emulator: ``python -m worker.emulator --port 8765 --seed sample``."""

from __future__ import annotations

import logging

from worker.emulator.cli import main

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    main()

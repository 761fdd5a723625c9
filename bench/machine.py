"""What machine a figure was measured on, for the documents `make bench` and `make chaos` write."""

import os
import platform
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram_kb = int(line.split()[1])
    cores = os.cpu_count() or 0
    return f"{cores} cores ({cpu}), {ram_kb / 1024**2:.0f} GB RAM, {platform.system()}"

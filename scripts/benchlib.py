"""What every benchmark prints about the machine it ran on (imported by the scripts beside it)."""

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(*extra: str) -> str:
    """CPU, cores, Python, load average and any ``extra`` notes, on one line."""
    parts = [cpu_model(), f"{os.cpu_count()} logical cores", f"Python {platform.python_version()}",
             f"load average {os.getloadavg()[0]:.1f}", *extra]
    return "; ".join(parts)

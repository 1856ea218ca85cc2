"""Planner benchmark (a script, not collected by pytest): the same as ``hems bench planner``.

    .venv/bin/python tests/bench_planner.py [--json] [--repeats 20] [--horizons 96,192,288] [--step-s 900]

Targets on the gateway: 96 steps < 30 ms median, 288 steps < 200 ms.
"""

import sys

from hems.planner.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

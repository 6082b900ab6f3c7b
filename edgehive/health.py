"""``python -m edgehive.health``: the containers' healthcheck, exit 0 when the component is up.

Reads the health file the component keeps fresh (runtime.healthfile), so a check costs
one small Python start-up and no network.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.healthfile import ENV_VAR, MAX_AGE_S, check


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgehive.health", description=__doc__)
    parser.add_argument("--file", type=Path, default=os.environ.get(ENV_VAR),
                        help=f"the health file (default ${ENV_VAR})")
    parser.add_argument("--max-age", type=float, default=MAX_AGE_S, help="seconds after which the file is stale")
    args = parser.parse_args(argv)
    if args.file is None:
        print(f"unhealthy: no health file; set {ENV_VAR} or pass --file", file=sys.stderr)
        return 1
    verdict = check(args.file, args.max_age)
    print(("healthy: " if verdict.healthy else "unhealthy: ") + verdict.reason)
    return 0 if verdict.healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())

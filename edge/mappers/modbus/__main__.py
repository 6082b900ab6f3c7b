"""``python -m edge.mappers.modbus``: the Modbus mapper (as ``edgehive mapper modbus``)."""

import sys

from edge.mappers.modbus.main import main

raise SystemExit(main(sys.argv[1:]))

"""The Modbus devices of ``bench mapper``: pymodbus's real Modbus TCP server, run as a process of its own.

``python -m edgehive.bench.modbussim PORT REGISTERS`` serves unit 1 with REGISTERS holding registers (all 0)
on loopback until killed. Every simulated device is this one server at its own register offsets (as many
field devices behind one gateway), so 100 devices cost one process, not 100. The bench changes a register
through a real Modbus client (the mapper's own RegisterClient), as a device's firmware would change it.

The server is a process, not a thread of the bench: its CPU is then its own (the bench reports it apart
from the mapper's), and the bench's threads do not slow its answers.
"""

from __future__ import annotations

import socket
import sys
from contextlib import ExitStack
from pathlib import Path

from edgehive.bench.harness import BenchError, free_port, process, wait_until

UNIT = 1


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_modbus_sim(stack: ExitStack, work: Path, registers: int) -> tuple[int, int]:
    """The server on a free port with ``registers`` holding registers, stopped by ``stack``: (port, pid)."""
    if not 1 <= registers <= 65536:
        raise BenchError(f"the Modbus server holds 1 to 65536 registers, not {registers}")
    port = free_port()
    proc = stack.enter_context(process([sys.executable, "-m", "edgehive.bench.modbussim", str(port), str(registers)],
                                       work / "modbus-server.log"))
    wait_until(lambda: _listening(port) or proc.poll() is not None, 20, "the Modbus server to listen")
    if proc.poll() is not None:
        raise BenchError(f"the Modbus server exited with {proc.returncode}; see {work}/modbus-server.log")
    return port, proc.pid


def main() -> None:
    # Imported here: only the server process needs pymodbus's server (the bench's own process never does).
    from pymodbus.server import StartTcpServer  # noqa: PLC0415
    from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: PLC0415

    port, registers = int(sys.argv[1]), int(sys.argv[2])
    device = SimDevice(id=UNIT, simdata=[SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)])
    StartTcpServer(context=device, address=("127.0.0.1", port))


if __name__ == "__main__":
    main()

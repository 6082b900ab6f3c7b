"""The Modbus side of `edgehive mapper modbus`: configData parsing, register codec, polling on pymodbus."""

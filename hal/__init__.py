"""The only code that touches hardware: GPIO, the Modbus bus, audio, clocks; sim/ fakes them."""

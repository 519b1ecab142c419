"""The only code that touches hardware: GPIO, the Modbus bus, audio; sim/ fakes them."""

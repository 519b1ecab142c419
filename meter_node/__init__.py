"""Water-meter node: reads Modbus meters and watches elderly residents living alone."""

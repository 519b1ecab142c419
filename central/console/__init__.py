"""The operator console's files (HTML, JS, CSS, SVG), served by central.routes.console; a package so the wheel
carries them."""

"""GPIO devices built from config through gpiozero: digital inputs, buttons and LEDs by BCM pin number.

All hardware goes through gpiozero's pin factory: ``lgpio`` on a Pi, ``mock`` (MockFactory) in tests and the
simulated community. A test installs a MockFactory and then builds the node; the node never knows.
Each builder takes an optional ``pin_factory`` (gpiozero's own keyword) for callers that run several nodes'
pins in one process, each on its own MockFactory. The pin specs are this module's own protocols: a role's
config (``common.config.InputPin``...) fits them as it is, and this module imports nothing from the project.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import shutil
import sys
import tempfile
from typing import Protocol

from gpiozero import LED, PWMLED, Button, Device, DigitalInputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError, PinError, PinPWMUnsupported
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

log = logging.getLogger(__name__)


class InputSpec(Protocol):
    """A digital input: BCM pin, the level that means active, the internal pull (None: none), debounce."""

    @property
    def pin(self) -> int: ...
    @property
    def active_high(self) -> bool: ...
    @property
    def pull_up(self) -> bool | None: ...
    @property
    def bounce_s(self) -> float: ...


class ButtonSpec(Protocol):
    """A push button: BCM pin, wired to ground with the pull-up (True) or to 3.3 V, debounce, hold time."""

    @property
    def pin(self) -> int: ...
    @property
    def pull_up(self) -> bool: ...
    @property
    def bounce_s(self) -> float: ...
    @property
    def hold_s(self) -> float: ...


class LedSpec(Protocol):
    """An LED or lamp: BCM pin, lit by a high level (True) or a low one."""

    @property
    def pin(self) -> int: ...
    @property
    def active_high(self) -> bool: ...


ENV_PIN_FACTORY = "GPIOZERO_PIN_FACTORY"
# gpiozero's own factory names and where they live (the same entry points gpiozero registers)
PIN_FACTORIES: dict[str, str] = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
    "mock": "gpiozero.pins.mock:MockFactory",
}
DEFAULT_ORDER = ("lgpio", "rpigpio", "pigpio", "native")  # gpiozero's own, when no factory is named
_INSTALL_HINT = {
    "lgpio": "on a Raspberry Pi install the pi-gpio extra (pip install 'changbai-nodes[pi-gpio]' or apt-get "
    'install python3-lgpio); off a Pi use pin_factory = "mock"',
    "rpigpio": "install RPi.GPIO (apt-get install python3-rpi.gpio); on Pi OS 12 prefer lgpio",
    "pigpio": "install pigpio and start its daemon (apt-get install pigpio python3-pigpio; systemctl start pigpiod)",
    "native": "the native factory needs /dev/gpiomem on a Raspberry Pi",
}
# the factory loaded but did not start: installing it again is not the answer
_START_HINT = {
    "lgpio": "lgpio is installed but did not start: on a Raspberry Pi /dev/gpiochip0 (gpiochip4 on a Pi 5) "
    'must exist and the service user be in the gpio group; off a Pi use pin_factory = "mock"',
}


def use_pin_factory(configured: str = "") -> None:
    """Install the pin factory: ``configured`` (the config's ``gpio.pin_factory``), else $GPIOZERO_PIN_FACTORY,
    else the first of gpiozero's own default order (lgpio, rpigpio, pigpio, native) that starts.

    A MockFactory that is already installed (by a test or the simulated community) is kept whatever the
    config says: the harness swaps the factory, not the node; with nothing named, any installed factory is kept.
    Raises ``BadPinFactory`` naming the factory and what to install when it cannot be loaded (e.g. lgpio off a
    Pi); with nothing named, naming each factory tried and why it did not start (gpiozero itself says only "Unable
    to load any default pin factory!", its reasons going to stderr as warnings).
    """
    current = Device.pin_factory
    if isinstance(current, MockFactory):
        log.debug("keeping the installed MockFactory (config asks for %r)", configured or "default")
        return
    name = configured or os.environ.get(ENV_PIN_FACTORY, "").strip().lower()
    if name and name not in PIN_FACTORIES:
        raise BadPinFactory(
            f"pin factory {name!r} (from ${ENV_PIN_FACTORY}) is unknown; allowed: {', '.join(PIN_FACTORIES)}"
        )
    if current is not None and (not name or type(current).__name__ == PIN_FACTORIES[name].partition(":")[2]):
        return
    if name:
        source = "gpio.pin_factory" if configured else f"${ENV_PIN_FACTORY}"
        try:
            factory = _start_factory(name)
        except BadPinFactory as exc:
            raise BadPinFactory(f"{source} = {exc}") from exc.__cause__
    else:
        name, factory = _default_factory()
    if current is not None:
        current.close()
    Device.pin_factory = factory
    log.info("GPIO pin factory: %s", name)


def _start_factory(name: str) -> Factory:
    """The factory ``name`` started, or ``BadPinFactory("'name': why; what to install")``."""
    if name == "lgpio":
        _lgpio_workdir()
    module_name, _, class_name = PIN_FACTORIES[name].partition(":")
    here = os.getcwd()
    try:
        factory: Factory = getattr(importlib.import_module(module_name), class_name)()
        return factory
    except ImportError as exc:
        raise BadPinFactory(f"{name!r}: cannot load it ({exc}); {_INSTALL_HINT.get(name, '')}") from exc
    except Exception as exc:  # noqa: BLE001 - each factory fails its own way (lgpio.error, OSError...): re-raised
        reason = f"{type(exc).__name__}: {exc}"
        hint = _START_HINT.get(name, _INSTALL_HINT.get(name, ""))
        raise BadPinFactory(f"{name!r}: cannot start it ({reason}); {hint}") from exc
    finally:
        os.chdir(here)  # lgpio moves the process into $LG_WD when it is imported


def _default_factory() -> tuple[str, Factory]:
    """The first of gpiozero's default factories that starts, as gpiozero would choose it, but with the reason of
    each that did not when none does."""
    reasons = []
    for name in DEFAULT_ORDER:
        try:
            factory = _start_factory(name)
        except BadPinFactory as exc:
            reasons.append(str(exc))
            continue
        if reasons:
            log.warning("GPIO: %s started after the others failed: %s", name, "; ".join(reasons))
        return name, factory
    raise BadPinFactory(f"gpio.pin_factory is not set and no pin factory started: {'; '.join(reasons)}")


def _lgpio_workdir() -> None:
    """A folder of this process's own for lgpio's notification pipe, unless $LG_WD names one.

    lgpio makes that pipe (``.lgd-nfyN``) when it is imported, in $LG_WD (moving the process there), else in the
    working directory. Under systemd that is ``/``, which the service user cannot write (nor root, under
    ``ProtectSystem=strict``): the import then fails with ``FileNotFoundError: '.lgd-nfy-3'`` (gpiozero issue
    #1106, lg issue #22), and two processes in one folder would share one pipe's name (lg issue #12). The folder
    is made in the temporary directory (a unit's private /tmp) and removed at exit."""
    if os.environ.get("LG_WD") or "lgpio" in sys.modules:
        return
    folder = tempfile.mkdtemp(prefix="changbai-lgpio-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["LG_WD"] = folder


def _pin_errors() -> tuple[type[Exception], ...]:
    """What building a device raises for a pin it cannot have: gpiozero's errors, and lgpio's own ``lgpio.error``
    (for example 'GPIO busy': another process holds the line), which gpiozero's lgpio pins pass on as it is."""
    lgpio = sys.modules.get("lgpio")
    return (GPIOZeroError,) if lgpio is None else (GPIOZeroError, lgpio.error)


def _pin_error(exc: Exception, pin: int, what: str) -> GPIOZeroError:
    """A gpiozero exception (the same class where it was one) whose message names the BCM pin and the device."""
    text = str(exc)
    if isinstance(exc, BadPinFactory):
        return BadPinFactory(f"BCM {pin} ({what}): no usable GPIO pin factory: {text}")
    if isinstance(exc, GPIOPinInUse) or "busy" in text.lower():
        reason = f"already in use ({text}); two config keys on one pin, or another process holds it"
        return GPIOPinInUse(f"BCM {pin} ({what}): {reason}")
    if not isinstance(exc, GPIOZeroError):
        return PinError(f"BCM {pin} ({what}): {type(exc).__module__}.{type(exc).__name__}: {text}")
    return type(exc)(f"BCM {pin} ({what}): {text}")


def make_input(spec: InputSpec, pin_factory: Factory | None = None) -> DigitalInputDevice:
    """A digital input (door contact, level zone, presence/motion output) that is active as the config says.

    gpiozero only accepts ``active_state`` without a pull resistor, and with one the pull decides the active
    level (pull-up: active low). Config may ask for the other pairing (a normally-closed contact with a
    pull-up that is active when high): then the device is made without a pull and the pull set on its pin.
    """
    bounce = spec.bounce_s or None
    # gpiozero's own pairing: a pull-up means active low, a pull-down active high
    natural = spec.pull_up is not None and spec.pull_up != spec.active_high
    try:
        if natural:
            device = DigitalInputDevice(spec.pin, pull_up=spec.pull_up, bounce_time=bounce, pin_factory=pin_factory)
        else:
            device = DigitalInputDevice(
                spec.pin, pull_up=None, active_state=spec.active_high, bounce_time=bounce, pin_factory=pin_factory
            )
            if spec.pull_up is not None:
                try:
                    device.pin.pull = "up" if spec.pull_up else "down"
                except _pin_errors():
                    device.close()
                    raise
    except _pin_errors() as exc:
        raise _pin_error(exc, spec.pin, "input") from exc
    return device


def make_button(spec: ButtonSpec, pin_factory: Factory | None = None) -> Button:
    """A push button: pressed pulls the pin low with ``pull_up`` (the usual wiring), high without."""
    try:
        return Button(
            spec.pin,
            pull_up=spec.pull_up,
            bounce_time=spec.bounce_s or None,
            hold_time=spec.hold_s,
            pin_factory=pin_factory,
        )
    except _pin_errors() as exc:
        raise _pin_error(exc, spec.pin, "button") from exc


def make_led(spec: LedSpec, pin_factory: Factory | None = None, *, dimmable: bool = False) -> LED | PWMLED:
    """An LED or lamp, off at start; ``active_high = false`` for one wired from 3.3 V to the pin.

    ``dimmable``: a PWMLED (it can pulse) when the pin can do PWM, else a plain LED and an info log line.
    """
    try:
        if dimmable:
            try:
                return PWMLED(spec.pin, active_high=spec.active_high, initial_value=0, pin_factory=pin_factory)
            except PinPWMUnsupported:
                log.info("BCM %d cannot dim (no PWM): a plain LED instead", spec.pin)
        return LED(spec.pin, active_high=spec.active_high, initial_value=False, pin_factory=pin_factory)
    except _pin_errors() as exc:
        raise _pin_error(exc, spec.pin, "LED") from exc

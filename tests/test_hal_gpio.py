"""hal.gpio devices on gpiozero's MockFactory: press, hold, bounce, active-low inputs, pins in use, factories."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin
from gpiozero.pins.mock import MockFactory

from common.config import ButtonPin, InputPin, LedPin
from hal.gpio import ENV_PIN_FACTORY, make_button, make_input, make_led, use_pin_factory

ROOT = Path(__file__).resolve().parent.parent


def test_button_press_and_release(mock_factory: MockFactory) -> None:
    button = make_button(ButtonPin(pin=5))
    presses = []
    button.when_pressed = lambda: presses.append("pressed")
    pin = mock_factory.pin(5)
    assert pin.pull == "up" and not button.is_pressed
    pin.drive_low()
    assert button.is_pressed and presses == ["pressed"]
    pin.drive_high()
    assert not button.is_pressed


def test_button_without_pull_up_is_pressed_high(mock_factory: MockFactory) -> None:
    button = make_button(ButtonPin(pin=6, pull_up=False))
    mock_factory.pin(6).drive_high()
    assert button.is_pressed


def test_button_hold_fires_when_held(mock_factory: MockFactory) -> None:
    button = make_button(ButtonPin(pin=22, hold_s=0.05))
    held = threading.Event()
    button.when_held = held.set
    assert button.hold_time == pytest.approx(0.05)
    mock_factory.pin(22).drive_low()
    assert held.wait(5), "when_held did not fire while the button stayed pressed"
    assert button.is_held
    mock_factory.pin(22).drive_high()
    assert not button.is_held


def test_short_press_is_not_a_hold(mock_factory: MockFactory) -> None:
    button = make_button(ButtonPin(pin=23, hold_s=60.0))
    held = threading.Event()
    button.when_held = held.set
    mock_factory.pin(23).drive_low()
    mock_factory.pin(23).drive_high()
    assert not held.is_set() and not button.is_held


def test_bounce_time_reaches_the_pin(mock_factory: MockFactory) -> None:
    # MockPin stores bounce but does not filter edges (gpiozero leaves it unimplemented); lgpio filters
    # in the library. What the HAL owes is that the configured time reaches the pin.
    assert make_input(InputPin(pin=17, bounce_s=0.2)).pin.bounce == pytest.approx(0.2)
    assert make_button(ButtonPin(pin=18, bounce_s=0.03)).pin.bounce == pytest.approx(0.03)
    assert make_input(InputPin(pin=19, bounce_s=0.0)).pin.bounce is None


@pytest.mark.parametrize(
    ("active_high", "pull_up", "idle_active", "active_level"),
    [
        (False, True, False, "low"),  # contact to ground with the pull-up: closed = low = active
        (True, False, False, "high"),  # pull-down, active high
        (True, None, False, "high"),  # driven by a sensor (mmWave output), no pull
        (False, None, True, "low"),  # no pull, active low: a floating mock pin idles low
        (True, True, True, "high"),  # normally-closed contact with the pull-up: open circuit = high = active
        (False, False, True, "low"),
    ],
)
def test_input_polarity(mock_factory: MockFactory, active_high, pull_up, idle_active, active_level) -> None:
    device = make_input(InputPin(pin=17, active_high=active_high, pull_up=pull_up))
    pin = mock_factory.pin(17)
    expected_pull = {True: "up", False: "down", None: "floating"}[pull_up]
    assert pin.pull == expected_pull
    assert device.is_active is idle_active
    if active_level == "low":
        pin.drive_low()
        assert device.is_active
        pin.drive_high()
        assert not device.is_active
    else:
        pin.drive_high()
        assert device.is_active
        pin.drive_low()
        assert not device.is_active


def test_active_low_input_fires_events(mock_factory: MockFactory) -> None:
    door = make_input(InputPin(pin=17, active_high=False, pull_up=True))
    seen: list[str] = []
    door.when_activated = lambda: seen.append("closed")
    door.when_deactivated = lambda: seen.append("open")
    pin = mock_factory.pin(17)
    pin.drive_low()
    pin.drive_high()
    pin.drive_low()
    assert seen == ["closed", "open", "closed"]


def test_led_follows_polarity(mock_factory: MockFactory) -> None:
    led = make_led(LedPin(pin=12))
    sink = make_led(LedPin(pin=13, active_high=False))
    assert mock_factory.pin(12).state == 0 and mock_factory.pin(13).state == 1  # both off at start
    led.on()
    sink.on()
    assert mock_factory.pin(12).state == 1 and mock_factory.pin(13).state == 0


def test_pin_in_use_names_the_pin(mock_factory: MockFactory) -> None:
    door = make_input(InputPin(pin=17))  # kept referenced: a collected device frees its pin
    with pytest.raises(GPIOPinInUse, match="BCM 17 \\(button\\): already in use"):
        make_button(ButtonPin(pin=17))
    with pytest.raises(GPIOPinInUse, match="BCM 17 \\(LED\\)"):
        make_led(LedPin(pin=17))
    door.close()
    assert make_button(ButtonPin(pin=17)).pin is mock_factory.pin(17)  # free again after close


def test_invalid_pin_names_the_pin(mock_factory: MockFactory) -> None:
    with pytest.raises(PinInvalidPin, match="BCM 40"):
        make_led(LedPin(pin=40))  # config validation stops this earlier; the HAL still says which pin


# ------------------------------------------------------------------------------------------ factories
@pytest.fixture
def no_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """gpiozero with no factory installed yet, restored afterwards."""
    previous = Device.pin_factory
    Device.pin_factory = None
    monkeypatch.delenv(ENV_PIN_FACTORY, raising=False)
    monkeypatch.setenv("LG_WD", str(tmp_path))  # lgpio's folder, were it loaded (hal.gpio would make one)
    try:
        yield
    finally:
        if Device.pin_factory is not None and Device.pin_factory is not previous:
            Device.pin_factory.close()
        Device.pin_factory = previous


def test_config_mock_factory_is_installed(no_factory) -> None:
    use_pin_factory("mock")
    assert isinstance(Device.pin_factory, MockFactory)


def test_env_pin_factory_is_honoured(no_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PIN_FACTORY, "mock")
    use_pin_factory()
    assert isinstance(Device.pin_factory, MockFactory)


def test_unknown_env_factory_is_refused(no_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PIN_FACTORY, "banana")
    with pytest.raises(BadPinFactory, match="banana.*allowed: lgpio"):
        use_pin_factory()


def test_no_setting_tries_gpiozeros_order_and_says_why_each_did_not_start(no_factory) -> None:
    # gpiozero alone says only "Unable to load any default pin factory!" (its reasons go to stderr as warnings): a
    # kiosk without the pi-gpio extra reported just that to maintenance (scripts/gpio-vm --role kiosk)
    with pytest.raises(BadPinFactory) as caught:
        use_pin_factory()
    message = str(caught.value)
    assert message.startswith("gpio.pin_factory is not set and no pin factory started: 'lgpio': cannot start it")
    assert "lgpio is installed but did not start" in message  # not "install the pi-gpio extra": it is there
    for told in ("'rpigpio': cannot load it (No module named 'RPi')", "'pigpio': cannot load it", "'native': cannot"):
        assert told in message
    assert Device.pin_factory is None


def test_no_setting_takes_the_first_that_starts_and_logs_why_the_others_did_not(
    no_factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hal import gpio

    monkeypatch.setitem(sys.modules, "lgpio", None)  # as on a machine without the pi-gpio extra
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    monkeypatch.setattr(gpio, "DEFAULT_ORDER", ("lgpio", "mock"))
    with caplog.at_level(logging.WARNING, logger="hal.gpio"):
        use_pin_factory()
    assert isinstance(Device.pin_factory, MockFactory)
    assert "GPIO: mock started after the others failed: 'lgpio': cannot load it" in caplog.text
    assert "pi-gpio" in caplog.text


def test_lgpio_missing_off_pi_is_a_clear_error(no_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lgpio", None)  # as on a machine without the pi-gpio extra
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    with pytest.raises(BadPinFactory) as caught:
        use_pin_factory("lgpio")
    message = str(caught.value)
    assert "gpio.pin_factory = 'lgpio'" in message and "pi-gpio" in message
    assert Device.pin_factory is None


def _in_proc(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` run by this Python with / as it is under systemd: a working directory nobody may write
    (/proc: not even root), no $LG_WD."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd="/proc", env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LG_WD"}
    return {**env, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}


def test_lgpio_loads_where_the_working_directory_cannot_be_written(tmp_path: Path) -> None:
    # lgpio makes its notification pipe in the working directory when imported: under systemd, / (gpiozero #1106)
    env = _env(tmp_path)
    bare = _in_proc("import lgpio", env)
    assert bare.returncode != 0 and ".lgd-nfy" in bare.stderr  # the trap is real here: the library alone fails
    code = (
        "import os\n"
        "from hal.gpio import use_pin_factory\n"
        "try:\n"
        "    use_pin_factory('lgpio')\n"
        "except Exception as exc:\n"
        "    print('refused:', exc)\n"
        "print('cwd:', os.getcwd())\n"
        "print('lg_wd:', os.environ['LG_WD'])\n"
    )
    done = _in_proc(code, env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert ".lgd-nfy" not in out  # lgpio loaded; off a Pi the factory then finds no Pi ("unable to locate")
    assert "cwd: /proc" in out  # lgpio moved the process into its folder; use_pin_factory moved it back
    folder = Path(out.split("lg_wd: ")[1].split()[0])
    assert folder.parent == tmp_path and not folder.exists()  # the process's own folder, removed at exit


def test_a_line_another_process_holds_is_told_by_pin_not_as_lgpio_error(tmp_path: Path) -> None:
    # gpiozero's lgpio pin passes lgpio.error('GPIO busy') on as it is; the node catches gpiozero's errors
    code = (
        "from hal.gpio import _pin_error, use_pin_factory\n"
        "try:\n"
        "    use_pin_factory('lgpio')\n"
        "except Exception:\n"
        "    pass\n"
        "import lgpio\n"
        "for number, pin, what in ((lgpio.GPIO_BUSY, 17, 'input'), (lgpio.BAD_GPIO_NUMBER, 60, 'LED')):\n"
        "    told = _pin_error(lgpio.error(lgpio.error_text(number)), pin, what)\n"
        "    print(type(told).__name__, '|', told)\n"
    )
    done = _in_proc(code, _env(tmp_path))
    assert done.returncode == 0, done.stderr
    busy, other = done.stdout.splitlines()
    assert busy.startswith("GPIOPinInUse | BCM 17 (input): already in use ('GPIO busy')") and "another process" in busy
    assert other == "PinError | BCM 60 (LED): lgpio.error: 'bad GPIO number'"


def test_installed_mock_factory_is_kept(mock_factory: MockFactory) -> None:
    # the example configs say lgpio; a test or the simulated community has already installed a MockFactory
    use_pin_factory("lgpio")
    assert Device.pin_factory is mock_factory


def test_two_nodes_in_one_process_use_their_own_factories(mock_factory: MockFactory) -> None:
    # the simulated community runs a lift and a kiosk in one process, both wired to BCM 17
    kiosk_pins = MockFactory()
    try:
        door = make_input(InputPin(pin=17, active_high=False, pull_up=True))
        button = make_button(ButtonPin(pin=17), pin_factory=kiosk_pins)
        kiosk_pins.pin(17).drive_low()
        assert button.is_pressed and not door.is_active
        mock_factory.pin(17).drive_low()
        assert door.is_active
        led = make_led(LedPin(pin=18), pin_factory=kiosk_pins)
        led.on()
        assert kiosk_pins.pin(18).state == 1 and mock_factory.pin(18).state == 0
    finally:
        kiosk_pins.reset()
        kiosk_pins.close()


def test_dimmable_led_is_a_pwm_led_on_a_pwm_pin_and_a_plain_led_otherwise(mock_factory: MockFactory) -> None:
    from gpiozero import LED, PWMLED
    from gpiozero.pins.mock import MockPWMPin

    plain = make_led(LedPin(pin=12), dimmable=True)  # MockPin: no PWM
    assert type(plain) is LED
    plain.close()
    pwm_factory = MockFactory(pin_class=MockPWMPin)
    try:
        led = make_led(LedPin(pin=12), pwm_factory, dimmable=True)
        assert isinstance(led, PWMLED)
        led.value = 0.5
        assert pwm_factory.pin(12).state == 0.5
        led.close()
    finally:
        pwm_factory.reset()

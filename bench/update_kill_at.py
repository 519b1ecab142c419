"""Run an update with the node's installed updater and SIGKILL itself just before the step named in argv[2]
(bench/bench_updates_e2e.py runs this with ROOT/committed/venv/bin/python)."""

import os
import signal
import sys
from pathlib import Path

from updates.nodefiles import load_updater_config
from updates.updater import Updater


def main() -> None:
    config, step = load_updater_config(Path(sys.argv[1])), sys.argv[2]

    def on_step(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    updater = Updater(config, on_step=on_step, say=print)
    with updater.locked():
        updater.recover()
        print(updater.update(force=True))


if __name__ == "__main__":
    main()

"""How CLI commands tell the user about progress: one flushed line on stderr, so stdout
stays clean for what a script reads (e.g. `export KUBECONFIG=…`)."""

import sys


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

"""``python -m broker``: run the embedded MQTT broker in the foreground."""

import argparse
import logging

from broker import cli

parser = argparse.ArgumentParser(prog="python -m broker", description="Run the embedded MQTT broker.")
cli.add_arguments(parser)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
raise SystemExit(cli.main(parser.parse_args()))

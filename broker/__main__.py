"""``python -m broker``: run the embedded MQTT broker in the foreground."""

import argparse

from broker import cli

parser = argparse.ArgumentParser(prog="python -m broker", description="Run the embedded MQTT broker (amqtt).")
cli.add_broker_arguments(parser)
raise SystemExit(cli.broker_main(parser.parse_args()))

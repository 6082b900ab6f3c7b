"""The line a log cut short by its node ends with (cloud/stream/https.py): the only word of it that reaches
``kubectl logs -f`` through the API server, which ends its own response cleanly whatever the kubelet did."""

from __future__ import annotations

from cloud.stream.https import broken_line
from runtime.streamflow import StreamEnded


def test_a_link_down_or_a_silent_node_says_the_link_was_lost() -> None:
    down = broken_line("edge-1", StreamEnded(503, "node edge-1's link to the cloud went down"), True)
    assert down == b"error: the link to node edge-1 was lost (node edge-1's link to the cloud went down); " \
                   b"the log is cut here\n"
    silent = broken_line("edge-1", StreamEnded(504, "node edge-1 was silent for 30 s"), True)
    assert silent.startswith(b"error: the link to node edge-1 was lost (node edge-1 was silent for 30 s)")


def test_another_end_names_the_node_and_starts_a_line_of_its_own() -> None:
    line = broken_line("edge-2", StreamEnded(502, "reading the log from podman failed: reset"), False)
    assert line == b"\nerror: node edge-2 ended the log (reading the log from podman failed: reset); " \
                   b"the log is cut here\n"

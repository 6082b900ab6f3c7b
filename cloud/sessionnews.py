"""CloudHub's retained session announcements (schemas.link.SessionNews) as a cloud component takes them in.

CloudHub replicas (for routing) and the controllers (for resync and batch sizes) read the same announcements
and refuse a bad one the same way: counted, logged with its id and node, and nothing else changed.
"""

from __future__ import annotations

import logging

from runtime.counters import Counters
from schemas.envelope import Envelope
from schemas.fields import BodyError
from schemas.link import SessionNews

log = logging.getLogger(__name__)


def read_session_news(envelope: Envelope, counters: Counters) -> SessionNews | None:
    """The announcement in ``envelope``, its op checked against its state; None (counted as ``refused``) when
    either is wrong."""
    try:
        news = SessionNews.parse(envelope.body)
        news.check_op(envelope.op)
    except BodyError as exc:
        counters.inc("refused")
        log.warning("refused session announcement %s for %s: %s", envelope.id, envelope.node, exc)
        return None
    return news

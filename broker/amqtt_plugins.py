"""amqtt plugins that enforce edgehive's password file and link ACL inside the embedded broker."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.acl import LinkAcl
from broker.passwords import PasswordFile

log = logging.getLogger(__name__)


class OpenAuth(BaseAuthPlugin):
    """Lets every client in, as amqtt's anonymous plugin does, but keeps persistent sessions persistent.

    amqtt's own plugin marks every client anonymous, and amqtt then queues nothing
    for an anonymous client while it is away: a restarting bridge or component
    would silently miss what was published meanwhile.
    """

    async def authenticate(self, *, session: Session) -> bool | None:
        session.is_anonymous = False
        return True


class CertificateAuth(BaseAuthPlugin):
    """Admits a client whose TLS certificate the listener verified; its CN became the user name.

    The handshake already checked the chain and the CRL; this only refuses a connection
    that somehow arrived without an identity (a listener without TLS, for instance).
    """

    async def authenticate(self, *, session: Session) -> bool | None:
        if not getattr(session, "edgehive_identity", None):
            log.warning("refused client %s: no client certificate", session.client_id)
            return False
        session.is_anonymous = False
        return True


class PasswordFileAuth(BaseAuthPlugin):
    """Checks users against a mosquitto-format password file, re-read when it changes (no restart)."""

    @dataclass
    class Config:
        password_file: str = ""

    def __init__(self, context: object) -> None:
        super().__init__(context)
        self._users = PasswordFile(Path(self.config.password_file))

    async def authenticate(self, *, session: Session) -> bool | None:
        user = session.username
        if not self._users.check(user, session.password):
            log.warning("refused client %s: unknown user or wrong password (user %r)", session.client_id, user)
            return False
        return True


class LinkAclPlugin(BaseTopicPlugin):
    """Enforces broker.acl.LinkAcl on publish, subscribe and delivery."""

    @dataclass
    class Config:
        cloud_users: list[str] = field(default_factory=lambda: ["cloud"])

    def __init__(self, context: object) -> None:
        super().__init__(context)
        self._acl = LinkAcl(frozenset(self.config.cloud_users))

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        user = session.username if session else None
        if topic is None:
            return False
        if action == Action.PUBLISH:
            allowed = self._acl.may_publish(user, topic)
        elif action == Action.SUBSCRIBE:
            allowed = self._acl.may_subscribe(user, topic)
        else:
            allowed = self._acl.may_receive(user, topic)
        if not allowed and action != Action.RECEIVE:
            log.warning("refused %s on %s for user %r", action.value if action else "?", topic, user)
        return allowed

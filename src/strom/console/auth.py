"""Logins to the console and /metrics when the broker's authorizer is on: the broker's SCRAM
users and passwords (a form for browsers, HTTP Basic for scrapers); the principal is then
``User:<name>`` and the console shows only what it may describe. Without an authorizer,
everyone is User:ANONYMOUS and nothing asks for a login (as Kafka without one)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import time
from collections import OrderedDict

from strom.handlers.context import BrokerContext
from strom.security.scram import password_matches

ANONYMOUS = "User:ANONYMOUS"
COOKIE = "strom_console"
SESSION_S = 8 * 3600
MAX_SESSIONS = 10_000
BASIC_CACHE_S = 60  # a scraper's verified password is not re-hashed (4096+ iterations) each scrape
FAILED_DELAY_S = 0.5  # a wrong password is answered late (Kafka: connection.failed.authentication.delay.ms)


class Logins:
    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()  # token -> (principal, expiry)
        self._basic: dict[tuple[str, bytes], tuple[bool, float]] = {}  # (user, sha256(password)) -> (right, expiry)

    @property
    def required(self) -> bool:
        return self.ctx.authorizer is not None

    async def verify(self, user: str, password: str) -> bool:
        """Whether the password is the user's under any of its SCRAM mechanisms."""
        credentials = list(self.ctx.image.scram.get(user, {}).values())
        if not credentials:
            return False
        # hashing the password costs milliseconds: off the event loop
        return await asyncio.to_thread(lambda: any(password_matches(c, password) for c in credentials))

    async def login(self, user: str, password: str) -> str | None:
        """A new session token, or None for a wrong user or password."""
        if not await self.verify(user, password):
            await asyncio.sleep(FAILED_DELAY_S)
            return None
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (f"User:{user}", time.monotonic() + SESSION_S)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def logout(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    async def principal(self, cookie: str | None, authorization: str | None) -> str | None:
        """Who sends a request (its session cookie or Basic credentials); None when a login is
        needed and these are missing or wrong."""
        if not self.required:
            return ANONYMOUS
        now = time.monotonic()
        if cookie and (found := self._sessions.get(cookie)) is not None:
            if found[1] > now and found[0].partition(":")[2] in self.ctx.image.scram:  # the user may be gone
                return found[0]
            del self._sessions[cookie]
        if authorization and authorization[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            key = (user, hashlib.sha256(password.encode()).digest())
            known = self._basic.get(key)
            if known is None or known[1] <= now or user not in self.ctx.image.scram:
                # wrong answers are remembered too: a flood of guesses costs no hashing
                known = (await self.verify(user, password), now + BASIC_CACHE_S)
                if len(self._basic) > MAX_SESSIONS:
                    self._basic.clear()
                self._basic[key] = known
            if known[0]:
                return f"User:{user}"
            await asyncio.sleep(FAILED_DELAY_S)
        return None

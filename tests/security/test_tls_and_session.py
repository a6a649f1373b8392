"""Principal mapping rules (Kafka's SslPrincipalMapper semantics) and the session's gate."""

from __future__ import annotations

import pytest

from strom.protocol.api import ApiKey
from strom.security.listeners import Listener
from strom.security.session import ListenerSecurity, Session
from strom.security.tls import map_principal, parse_mapping_rules

DN = "CN=Alice Smith,OU=ServiceUsers,O=Acme,C=US"


@pytest.mark.parametrize(("rules", "expected"), [
    (None, DN),
    ("DEFAULT", DN),
    ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/", "Alice Smith"),
    ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L", "alice smith"),
    ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/U", "ALICE SMITH"),
    ("RULE:^CN=(.*?),OU=Admins.*$/$1/, RULE:^CN=([^ ]*) .*$/$1@acme/,DEFAULT", "Alice@acme"),
    ("RULE:^CN=(.*?),OU=Admins.*$/$1/", None),  # no rule applies: Kafka refuses the client
    ("RULE:^.*O=(\\w+).*$/org-$1/\nDEFAULT", "org-Acme"),
])
def test_mapping_rules(rules, expected):
    assert map_principal(DN, parse_mapping_rules(rules)) == expected


@pytest.mark.parametrize("bad", ["RULE:x", "NONSENSE", "RULE:a/b/X"])
def test_bad_mapping_rules(bad):
    with pytest.raises(ValueError):
        parse_mapping_rules(bad)


def test_a_sasl_session_serves_only_the_handshake_until_authenticated():
    session = Session(ListenerSecurity(Listener("SASL_SSL", "SASL_SSL", "", 0), ("SCRAM-SHA-256",), reauth_ms=1000))
    for key in (ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE):
        assert session.refusal(key, 0.0) is None
    assert "before SASL authentication" in session.refusal(ApiKey.METADATA, 0.0)
    session.authenticated, session.expires_at = True, 10.0
    assert session.refusal(ApiKey.METADATA, 9.9) is None
    assert "expired" in session.refusal(ApiKey.PRODUCE, 10.0)
    session.reauthenticating = True
    assert session.refusal(ApiKey.FETCH, 5.0) is not None


def test_a_plaintext_session_is_authenticated_as_anonymous():
    session = Session(ListenerSecurity(Listener("PLAINTEXT", "PLAINTEXT", "", 0)))
    assert session.authenticated and session.principal == "User:ANONYMOUS"
    assert session.refusal(ApiKey.PRODUCE, 0.0) is None

"""The console and /metrics with the broker's authorizer on: a login with the broker's SCRAM
users (a form, HTTP Basic for scrapers), and only what the principal may describe shown;
state-changing actions need their ACLs. A real broker process; ACLs made by a real client."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid

import aiohttp
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.conftest import Broker

ALICE, ALICE_PASSWORD = "alice", "alice-secret"
MINE, OTHERS, GROUP = "alice-orders", "payroll", "alice-g"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("console-auth") / "data"
    added = subprocess.run([sys.executable, "-m", "strom", "user", "add", ALICE, "--password", ALICE_PASSWORD,
                            "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    # Kafka clients here are anonymous over PLAINTEXT, made super users to set things up;
    # the console's viewers are the SCRAM users.
    broker = Broker(data_dir, http=True, extra_args=[
        "-o", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "-o", "super.users=User:ANONYMOUS", "-o", "console.sample.interval.ms=300"])
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(MINE, 1, 1), NewTopic(OTHERS, 1, 1)]).values():
        future.result()
    user = f"User:{ALICE}"
    acls = [AclBinding(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, user, "*", AclOperation.READ,
                       AclPermissionType.ALLOW),
            AclBinding(ResourceType.GROUP, GROUP, ResourcePatternType.LITERAL, user, "*", AclOperation.READ,
                       AclPermissionType.ALLOW)]
    for future in admin.create_acls(acls).values():
        future.result()
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for topic in (MINE, OTHERS):
        for i in range(10):
            producer.produce(topic, value=f"{topic}-{i}")
    producer.flush(10)
    for group, topic in ((GROUP, MINE), ("hr", OTHERS)):
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        consumer.close()
    broker.url = f"http://127.0.0.1:{broker.http_port}"
    yield broker
    broker.stop()


async def logged_in(url: str, user: str = ALICE, password: str = ALICE_PASSWORD) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: cookies of an IP host
    async with session.post(url + "/login", data={"username": user, "password": password, "next": "/"},
                            allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()
    return session


def test_pages_ask_for_a_login(secured):
    async def check():
        async with aiohttp.ClientSession() as session:
            async with session.get(secured.url + f"/topics/{MINE}", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == f"/login?next=/topics/{MINE}"
            async with session.post(secured.url + "/login", data={"username": ALICE, "password": "wrong"}) as answer:
                assert answer.status == 401
                assert "Wrong user name or password." in await answer.text()
            async with session.post(secured.url + "/login", data={"username": "mallory", "password": "x"}) as answer:
                assert answer.status == 401
            async with session.get(secured.url + "/healthz") as answer:
                assert answer.status == 200  # probes need no login
    run(check())


def test_a_user_sees_only_what_it_may_describe(secured):
    async def check():
        session = await logged_in(secured.url)
        async with session:
            async with session.get(secured.url + "/") as answer:
                page = await answer.text()
                assert answer.status == 200
                assert f"User:{ALICE}" in page
                assert f">{MINE}</a>" in page and f">{GROUP}</a>" in page
                assert OTHERS not in page and ">hr</a>" not in page
            async with session.get(secured.url + f"/topics/{MINE}?partition=0&offset=0") as answer:
                page = await answer.text()
                assert answer.status == 200 and f"{MINE}-9" in page
                assert 'id="produce"' not in page  # no WRITE: no form
            async with session.get(secured.url + f"/topics/{OTHERS}") as answer:
                assert answer.status == 404
                assert f"Topic &#39;{OTHERS}&#39; does not exist." in await answer.text()
            async with session.get(secured.url + "/groups/hr") as answer:
                assert answer.status == 404
            async with session.post(secured.url + f"/topics/{MINE}/produce", data={"value": "x"}) as answer:
                assert answer.status == 403
                assert "may not WRITE topic" in await answer.text()
            async with session.get(secured.url + f"/groups/{GROUP}") as answer:
                page = await answer.text()
                assert answer.status == 200 and 'id="reset"' in page
            async with session.post(secured.url + f"/groups/{GROUP}/reset", data={"to": "latest"}) as answer:
                assert answer.status == 200  # redirected to the group page
                assert "Reset 1 partitions to the latest offsets." in await answer.text()
            async with session.post(secured.url + "/logout", allow_redirects=False) as answer:
                assert answer.status == 303
            async with session.get(secured.url + "/", allow_redirects=False) as answer:
                assert answer.status == 303  # logged out
    run(check())


def test_a_cross_site_form_is_refused(secured):
    async def check():
        async with await logged_in(secured.url) as session, session.post(
                secured.url + f"/groups/{GROUP}/reset", data={"to": "earliest"},
                headers={"Origin": "http://evil.example"}) as answer:
            assert answer.status == 403
    run(check())


def test_metrics_need_basic_auth_and_hide_undescribable_series(secured):
    async def check():
        async with aiohttp.ClientSession() as session:
            async with session.get(secured.url + "/metrics") as answer:
                assert answer.status == 401
                assert answer.headers["WWW-Authenticate"].startswith("Basic")
            async with session.get(secured.url + "/metrics", headers=basic(ALICE, ALICE_PASSWORD)) as answer:
                text = await answer.text()
                assert answer.status == 200
                assert f'topic="{MINE}"' in text and f'topic="{OTHERS}"' not in text
                assert "strom_requests_total" in text
            async with session.get(secured.url + "/metrics", headers=basic(ALICE, "wrong")) as answer:
                assert answer.status == 401
    run(check())


def test_a_produce_allowed_by_acl_works(secured):
    admin = AdminClient({"bootstrap.servers": secured.bootstrap})
    topic = f"alice-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{ALICE}", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    admin.create_acls([binding])[binding].result()

    async def check():
        async with await logged_in(secured.url) as session, session.post(
                secured.url + f"/topics/{topic}/produce", data={"key": "k", "value": "v"}) as answer:
            assert answer.status == 200
            assert "Produced to partition 0 at offset 0." in await answer.text()
    run(check())


def test_the_sampler_reads_past_the_acls(secured):
    """The charts' sampler is the broker itself (an internal session): it records the lag of
    groups no viewer's ACL is asked about."""

    async def check():
        async with await logged_in(secured.url) as session:
            for _ in range(50):
                async with session.get(secured.url + f"/fragments/groups/{GROUP}/lag") as answer:
                    assert answer.status == 200
                    if "<polyline" in await answer.text():
                        return
                await asyncio.sleep(0.2)
            raise AssertionError("no lag chart")
    run(check())


def test_a_rebound_host_name_is_refused(secured):
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends
    Host: evil.example; the loopback listener does not answer it."""
    import urllib.request

    request = urllib.request.Request(secured.url + "/healthz", headers={"Host": "evil.example:80"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 421
    with urllib.request.urlopen(secured.url.replace("127.0.0.1", "localhost") + "/healthz", timeout=10) as answer:
        assert answer.status == 200

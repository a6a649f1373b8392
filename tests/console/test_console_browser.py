"""The web console in a real headless browser (Debian's chromium driven by selenium through
chromedriver) against a real broker process with traffic from real clients: pages render,
search filters, a message produced from the form arrives, an offset reset moves the lag,
unknown topics and groups get a clear error, the live chart draws."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import Broker

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")

TOPIC, GROUP = f"orders-{uuid.uuid4().hex[:6]}", "billing"
RECORDS, COMMITTED = 120, 50  # per partition: committed below the end, so the group lags


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory):
    broker = Broker(tmp_path_factory.mktemp("console") / "data", http=True,
                    extra_args=["-o", "console.sample.interval.ms=500"])
    broker.start()
    http = broker.http_port
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result()
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for partition in (0, 1):
        for i in range(RECORDS):
            item = "apple" if i % 10 == 0 else "pear"
            producer.produce(TOPIC, key=f"k{partition}-{i}", value=json.dumps({"n": i, "item": item}),
                             partition=partition, headers={"origin": b"test"})
    producer.produce(TOPIC, key=b"raw", value=bytes([0, 1, 2, 255]), partition=0)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(TOPIC, p, COMMITTED) for p in (0, 1)], asynchronous=False)
    consumer.close()
    broker.url = f"http://127.0.0.1:{http}"
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # no sandbox as root; no background networking: this machine's network is closed
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def rows(driver, table: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")]


def navigate(driver, element) -> None:
    """Click something that loads a new page, and wait until the new page is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def wait_for(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_overview_shows_brokers_topics_and_group_lag(console, browser):
    browser.get(console.url + "/")
    assert browser.title == "Overview · strom"
    assert rows(browser, "brokers")[0][0] == "0"
    topic = next(r for r in rows(browser, "topics") if r[0] == TOPIC)
    assert topic[1:4] == ["2", "1", str(2 * RECORDS + 1)]
    group = next(r for r in rows(browser, "groups") if r[0] == GROUP)
    assert group[1] == "Empty" and group[2] == "0"
    assert int(group[4]) == 2 * RECORDS + 1 - 2 * COMMITTED


def test_throughput_chart_goes_live(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(console.url + "/")
    producer = Producer({"bootstrap.servers": console.bootstrap})
    def peak() -> float:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )

        try:  # htmx swaps the chart in and out: an element found may be gone a moment later
            return float(browser.find_element(By.CSS_SELECTOR, ".chart .peak").text)
        except (NoSuchElementException, StaleElementReferenceException):
            return 0.0

    deadline = time.monotonic() + 20
    while peak() == 0 and time.monotonic() < deadline:  # htmx re-fetches the chart every 0.5 s
        for i in range(50):
            producer.produce(TOPIC, value=f"live-{i}", partition=1)
        producer.flush(5)
        time.sleep(0.5)
    assert peak() > 0, browser.page_source[-2000:]
    assert "messages in/s now" in browser.page_source


def test_topic_page_messages_and_search(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{console.url}/topics/{TOPIC}?partition=0&offset=0&limit=5")
    shown = rows(browser, "messages")
    assert [r[1] for r in shown] == ["0", "1", "2", "3", "4"]
    assert shown[0][3] == "k0-0"
    assert json.loads(shown[0][4]) == {"n": 0, "item": "apple"}  # pretty-printed JSON
    assert shown[0][5] == "origin: test"
    partitions = rows(browser, "partitions")
    assert [p[0] for p in partitions] == ["0", "1"] and partitions[0][1:3] == ["0", str(RECORDS + 1)]

    assert browser.find_element(By.ID, "older").get_attribute("href").endswith("partition=0&offset=0&limit=5")
    navigate(browser, browser.find_element(By.ID, "newer"))
    assert [r[1] for r in rows(browser, "messages")] == ["5", "6", "7", "8", "9"]

    browser.get(f"{console.url}/topics/{TOPIC}?partition=0&offset={RECORDS}")
    raw = rows(browser, "messages")[0]
    assert raw[3] == "raw" and raw[4] == "00 01 02 ff"  # binary as hex

    browser.get(f"{console.url}/topics/{TOPIC}")
    search = browser.find_element(By.NAME, "q")
    search.send_keys("apple")
    browser.find_element(By.NAME, "limit").clear()
    browser.find_element(By.NAME, "limit").send_keys("100")
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "#filter button"))
    found = rows(browser, "messages")
    assert len(found) == 2 * RECORDS // 10
    assert all('"apple"' in r[4] for r in found)
    assert "q=apple" in browser.current_url


def test_produce_from_the_form_arrives(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{console.url}/topics/{TOPIC}")
    form = browser.find_element(By.ID, "produce")
    form.find_element(By.NAME, "partition").send_keys("1")
    form.find_element(By.NAME, "key").send_keys("from-browser")
    form.find_element(By.NAME, "value").send_keys('{"hello": "console"}')
    form.find_element(By.NAME, "headers").send_keys("via=selenium")
    navigate(browser, form.find_element(By.TAG_NAME, "button"))
    note = browser.find_element(By.ID, "produced").text
    assert note.startswith("Produced to partition 1 at offset ")
    offset = int(note.rsplit(" ", 1)[1].rstrip("."))
    assert rows(browser, "messages")[0][3] == "from-browser"

    consumer = Consumer({"bootstrap.servers": console.bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}"})
    consumer.assign([TopicPartition(TOPIC, 1, offset)])
    message = None
    deadline = time.monotonic() + 15
    while message is None and time.monotonic() < deadline:
        message = consumer.poll(1)
    consumer.close()
    assert message is not None and message.error() is None
    assert (message.key(), message.value(), message.headers()) == (
        b"from-browser", b'{"hello": "console"}', [("via", b"selenium")])


def test_group_page_and_offset_reset_moves_the_lag(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{console.url}/groups/{GROUP}")
    offsets = rows(browser, "offsets")
    assert [(o[0], o[1], o[2]) for o in offsets] == [(TOPIC, "0", str(COMMITTED)), (TOPIC, "1", str(COMMITTED))]
    assert int(browser.find_element(By.ID, "total-lag").text) > 0
    assert rows(browser, "members")[0][0] == "No member online."
    # the lag chart fills from the sampler
    assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".chart svg polyline"))

    form = browser.find_element(By.ID, "reset")
    form.find_element(By.CSS_SELECTOR, "input[value=latest]").click()
    navigate(browser, form.find_element(By.TAG_NAME, "button"))
    assert browser.find_element(By.ID, "message").text == "Reset 2 partitions to the latest offsets."
    assert browser.find_element(By.ID, "total-lag").text == "0"

    consumer = Consumer({"bootstrap.servers": console.bootstrap, "group.id": GROUP})
    committed = consumer.committed([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)], timeout=10)
    ends = [consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in (0, 1)]
    consumer.close()
    assert [c.offset for c in committed] == ends

    form = browser.find_element(By.ID, "reset")
    form.find_element(By.CSS_SELECTOR, "input[value=earliest]").click()
    navigate(browser, form.find_element(By.TAG_NAME, "button"))
    assert [o[2] for o in rows(browser, "offsets")] == ["0", "0"]


def test_a_group_with_a_member_cannot_be_reset(console, browser):
    from selenium.webdriver.common.by import By

    group = f"live-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": console.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([TOPIC])
    try:
        assert wait_for(lambda: consumer.poll(0.5) is not None and consumer.assignment())
        consumer.commit(asynchronous=False)
        browser.get(f"{console.url}/groups/{group}")
        assert browser.find_element(By.ID, "group-state").text == "Stable"
        member = rows(browser, "members")[0]
        assert member[4].splitlines() == [f"{TOPIC}: 0, 1"]
        assert not browser.find_elements(By.ID, "reset")
    finally:
        consumer.close()


@pytest.mark.parametrize(("path", "message"), [
    ("/topics/no-such-topic", "Topic 'no-such-topic' does not exist."),
    ("/groups/no-such-group", "Group 'no-such-group' does not exist."),
    ("/brokers/7", "Broker 7 is not in the cluster"),
])
def test_unknown_names_get_a_clear_error(console, browser, path, message):
    from selenium.webdriver.common.by import By

    browser.get(console.url + path)
    assert browser.find_element(By.ID, "error").text.startswith(message)
    assert browser.title == "Error · strom"

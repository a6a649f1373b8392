"""What every client command shares: where the brokers are, the confluent-kafka clients, and
turning client errors into one sentence.

The bootstrap address comes from ``-b/--brokers``, else ``STROM_BROKERS``, else
127.0.0.1:9092. confluent_kafka is imported only inside these functions, so ``strom --help``
and ``strom serve`` never load librdkafka.

Exit codes: 0 success, 1 an operation failed (the message says why, in a sentence), 2 a
usage error (click's own convention).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_TIMEOUT = 5.0
PROBE_SLICE = 0.2
FIND_COORDINATOR = 10  # the API key a broker must offer to coordinate consumer groups  # seconds per metadata attempt while waiting for the first broker answer

# librdkafka logs connection failures on stderr by itself; the CLI reports them as sentences.
_LIBRDKAFKA_LOG = logging.getLogger("strom.cli.librdkafka")
_LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
_LIBRDKAFKA_LOG.propagate = False


class CliError(click.ClickException):
    """An operation failed; ``message`` is a full sentence. Exit code 1."""

    exit_code = 1


def fail(message: str) -> NoReturn:
    raise CliError(message)


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def clause(reason: str) -> str:
    """A sentence from error_reason, to follow a colon: "Could not create topic 'x': <clause>"."""
    return reason[0].lower() + reason[1:]


def parse_key_values(items: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` items of a repeatable option into a dict (a usage error otherwise)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint=option)
        out[key.strip()] = value
    return out


# --- errors ------------------------------------------------------------------------------------

_CONNECT_DETAIL = re.compile(r"failed: (.*?)(?: \(after \d+ms.*\))?$")


def error_reason(err: Any, *, topic: str | None = None, group: str | None = None) -> str:
    """A KafkaError as a sentence, in the user's words where we know them."""
    from confluent_kafka import KafkaError

    code = err.code()
    text = err.str() or err.name()
    if code == KafkaError.UNKNOWN_TOPIC_OR_PART and topic:
        return f"Topic '{topic}' does not exist."
    if code == KafkaError._UNKNOWN_TOPIC and topic:
        return f"Topic '{topic}' does not exist."
    if code == KafkaError.GROUP_ID_NOT_FOUND and group:
        return f"Consumer group '{group}' does not exist."
    if code == KafkaError.NON_EMPTY_GROUP and group:
        return f"Consumer group '{group}' still has active members; stop its consumers first."
    if code == KafkaError.COORDINATOR_NOT_AVAILABLE:
        return "The broker has no group coordinator available (it may not support consumer groups)."
    if code == KafkaError._UNSUPPORTED_FEATURE:
        return f"The broker does not support this operation ({text})."
    for prefix in ("Broker: ", "Local: "):
        if text.startswith(prefix):
            return sentence(f"{text.removeprefix(prefix)} ({err.name()})")
    return sentence(text)


class Client:
    """The bootstrap address and settings for one command's confluent-kafka clients."""

    def __init__(self, brokers: str, timeout: float, extra: Mapping[str, str] | None = None) -> None:
        self.brokers = brokers
        self.timeout = timeout
        self.extra = dict(extra or {})
        self._errors: list[Any] = []
        self._admin: Any = None
        self._probed = False

    # --- configuration ------------------------------------------------------------------------

    def config(self, **conf: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "bootstrap.servers": self.brokers,
            "client.id": "strom-cli",
            "socket.timeout.ms": max(int(self.timeout * 1000), 10),
            "socket.connection.setup.timeout.ms": max(int(self.timeout * 1000), 1000),
            "error_cb": self._errors.append,
            "logger": _LIBRDKAFKA_LOG,
        }
        base.update(conf)
        base.update(self.extra)
        return base

    @property
    def plaintext(self) -> bool:
        """Whether a raw socket may talk to the brokers (no TLS or SASL configured)."""
        return str(self.extra.get("security.protocol", "PLAINTEXT")).upper() == "PLAINTEXT"

    # --- clients ------------------------------------------------------------------------------

    def admin(self) -> Any:
        """The AdminClient, after checking that a broker answers (fails fast otherwise)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = self._make(AdminClient, self.config())
        if not self._probed:
            self._probe()
        return self._admin

    def producer(self, **conf: Any) -> Any:
        from confluent_kafka import Producer

        self.admin()
        return self._make(Producer, self.config(**conf))

    def consumer(self, **conf: Any) -> Any:
        from confluent_kafka import Consumer

        self.admin()
        settings = {
            "group.id": "strom-cli",  # librdkafka wants one; only used when the caller subscribes
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False,
        }
        settings.update(conf)
        return self._make(Consumer, self.config(**settings))

    def _make(self, cls: Any, conf: dict[str, Any]) -> Any:
        from confluent_kafka import KafkaException

        try:
            return cls(conf)
        except KafkaException as exc:
            err = exc.args[0]
            text = err.str() if hasattr(err, "str") else str(exc)
            fail(f"The client settings are not valid: {text}.")

    # --- reaching the cluster -----------------------------------------------------------------

    def unreachable(self) -> NoReturn:
        from confluent_kafka import KafkaError

        detail = ""
        for err in reversed(self._errors):
            if err.code() == KafkaError._RESOLVE:
                fail(f"Could not resolve the broker address {self.brokers}.")
            if err.code() == KafkaError._TRANSPORT:
                match = _CONNECT_DETAIL.search(err.str())
                if match:
                    detail = f" ({clause(match.group(1))})"
                break
        fail(f"Could not reach a broker at {self.brokers}{detail}.")

    def _fatal_connection_error(self) -> bool:
        from confluent_kafka import KafkaError

        fatal = {KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, KafkaError._AUTHENTICATION,
                 KafkaError._SSL}
        return any(err.code() in fatal for err in self._errors)

    def _probe(self) -> None:
        from confluent_kafka import KafkaError, KafkaException

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._admin.list_topics(timeout=min(PROBE_SLICE, max(deadline - time.monotonic(), 0.01)))
                self._probed = True
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() not in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT):
                    fail(error_reason(err))
            self._admin.poll(0)  # serves error_cb
            if self._fatal_connection_error():
                codes = {e.code() for e in self._errors}
                if KafkaError._AUTHENTICATION in codes or KafkaError._SSL in codes:
                    auth = next(e for e in self._errors if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL))
                    fail(f"Could not connect to {self.brokers}: {error_reason(auth)}")
                self.unreachable()
            if time.monotonic() >= deadline:
                fail(f"No broker at {self.brokers} answered within {self.timeout:g} s.")

    def require_groups(self) -> None:
        """Fail with a sentence, before waiting on timeouts, when the broker offers no group
        coordinator (no FindCoordinator in its ApiVersions). Unknown (TLS, SASL, no answer)
        means go ahead and let the client find out."""
        from strom.cli.wire import api_versions, split_address

        self.admin()
        if not self.plaintext:
            return
        address = split_address(self.brokers.split(",")[0])
        if address is None:
            return
        offered = api_versions(*address, self.timeout)
        if offered is not None and FIND_COORDINATOR not in offered:
            fail(f"The broker at {self.brokers} does not support consumer groups "
                 f"(it offers no FindCoordinator API).")

    def metadata(self, topic: str | None = None) -> Any:
        """Cluster metadata (every topic; never creates one)."""
        from confluent_kafka import KafkaException

        admin = self.admin()
        try:
            return admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            self._raise(exc.args[0], "read the cluster metadata", topic=topic)

    def topic_metadata(self, topic: str) -> Any:
        """One topic's metadata; a sentence and exit 1 when the topic does not exist."""
        from confluent_kafka import KafkaError

        md = self.metadata(topic)
        found = md.topics.get(topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            fail(f"Topic '{topic}' does not exist.")
        if found.error is not None:
            fail(f"Could not read topic '{topic}': {error_reason(found.error, topic=topic)}")
        return found

    # --- waiting for admin results ------------------------------------------------------------

    def result(self, future: Any, action: str, *, topic: str | None = None, group: str | None = None) -> Any:
        """Wait for an admin future; failures become ``Could not <action>: <reason>``."""
        from confluent_kafka import KafkaException

        try:
            return future.result(timeout=self.timeout + 1)
        except KafkaException as exc:
            self._raise(exc.args[0], action, topic=topic, group=group)
        except concurrent.futures.TimeoutError:
            fail(f"Could not {action}: no answer from {self.brokers} within {self.timeout:g} s.")

    def _raise(self, err: Any, action: str, *, topic: str | None = None, group: str | None = None) -> NoReturn:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            self.unreachable()
        if err.code() == KafkaError._TIMED_OUT:
            fail(f"Could not {action}: no answer from {self.brokers} within {self.timeout:g} s.")
        reason = error_reason(err, topic=topic, group=group)
        if reason.startswith(("Topic '", "Consumer group '")) and ("does not exist" in reason):
            fail(reason)
        fail(f"Could not {action}: {clause(reason)}")

    def list_offsets(self, partitions: list[tuple[str, int]], spec: Any) -> dict[tuple[str, int], int]:
        """ListOffsets (an admin OffsetSpec) for each (topic, partition), in one batch; a
        partition that fails is left out, so callers decide what a gap means."""
        from confluent_kafka import KafkaException, TopicPartition

        if not partitions:
            return {}
        futures = self.admin().list_offsets({TopicPartition(t, p): spec for t, p in partitions},
                                            request_timeout=self.timeout)
        out: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            with contextlib.suppress(KafkaException, TimeoutError):
                out[(tp.topic, tp.partition)] = future.result(timeout=self.timeout + 1).offset
        return out


def client_command(f: F) -> F:
    """Add ``-b/--brokers``, ``--timeout`` and ``-X`` and pass a ``client: Client`` instead."""

    @click.option(
        "-b", "--brokers", envvar="STROM_BROKERS", default=DEFAULT_BROKERS, show_default=True,
        metavar="HOST:PORT[,...]", help="Bootstrap brokers (env STROM_BROKERS).",
    )
    @click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
        metavar="SECONDS", help="How long to wait for a broker to answer.",
    )
    @click.option(
        "-X", "client_config", multiple=True, metavar="KEY=VALUE",
        help="A librdkafka client setting, e.g. -X security.protocol=SASL_SSL (repeatable).",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, brokers: str, timeout: float, client_config: tuple[str, ...], **kwargs: Any) -> Any:
        from confluent_kafka import KafkaException

        client = Client(brokers, timeout, parse_key_values(client_config, "-X"))
        try:
            return f(*args, client=client, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # BrokenPipeError: the reader went away, see cli.main
        except KafkaException as exc:
            err = exc.args[0]
            if hasattr(err, "code"):
                client._raise(err, "complete the request")
            fail(sentence(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a sentence, never a traceback
            fail(f"Unexpected error ({type(exc).__name__}: {exc}); this is a bug in strom, please report it.")

    return wrapper  # type: ignore[return-value]

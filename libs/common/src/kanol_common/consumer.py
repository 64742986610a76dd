"""Idempotent event consumers: an inbox row commits with the handler's effects.

A fetched batch is handled in one database transaction: records already in the inbox
``(group, event id)`` are skipped, each other record's handler runs with the transaction's
session, the inbox rows are inserted together, the transaction commits, and only then are
the Kafka offsets committed. A crash anywhere redelivers records whose effects either
committed with their inbox row (skipped next time) or did not commit at all (handled again).

If a handler fails, that transaction is rolled back and the batch is handled again
carefully: each record under a savepoint of its own, its inbox row inserted first, so that
one failure undoes no other record's effects. Handlers of the records before the failing one
therefore run twice in that case (their first effects were rolled back): like any
redelivery, this is why handlers that call other systems must be idempotent there.

Failures: :class:`RetryableError` and unexpected exceptions are retried in process with
backoff, then parked on ``<group>.retry`` until a due time, then sent to ``<group>.dlq``
once ``consumer_max_attempts`` tries are spent. :class:`NonRetryableError` and records that
cannot be decoded go to the DLQ at once. Parking happens before the offset commit, so a
crash in between parks the record twice rather than never. Records of one partition are
handled in order; a parked record does not hold back the ones after it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common import outbox
from kanol_common.db import Database
from kanol_common.delivery_models import inbox_table, unnest_strings
from kanol_common.envelope import (
    H_ID,
    H_TYPE,
    CloudEvent,
    UndecodableEvent,
    decode,
    encode_headers,
    format_time,
    header_map,
)
from kanol_common.events.base import EventData
from kanol_common.logging import get_logger
from kanol_common.metrics import CONSUMER_LAG, DLQ_MESSAGES, EVENTS_CONSUMED, HANDLER_LATENCY
from kanol_common.settings import CommonSettings
from kanol_common.tracing import get_tracer

if TYPE_CHECKING:
    from kanol_common.runtime import ServiceRuntime

log = get_logger(__name__)
tracer = get_tracer(__name__)

# Headers the runtime adds to parked records (retry and DLQ topics).
H_DUE_AT = "kanol_due_at"
H_ATTEMPTS = "kanol_attempts"
H_ORIGINAL_TOPIC = "kanol_original_topic"
H_ORIGINAL_PARTITION = "kanol_original_partition"
H_ORIGINAL_OFFSET = "kanol_original_offset"
H_ERROR = "kanol_error"
H_GROUP = "kanol_group"
H_FAILED_AT = "kanol_failed_at"
KANOL_HEADER_PREFIX = "kanol_"


class RetryableError(Exception):
    """A transient failure (network, 5xx, a lock): the event is tried again later."""


class NonRetryableError(Exception):
    """The event can never be handled as it is (bad data): it goes to the DLQ at once."""


E = TypeVar("E", bound=EventData)
Handler = Callable[[E, "HandlerContext"], Awaitable[None]]
FaultHook = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class HandlerContext:
    """What a handler gets besides the event data.

    ``session`` is the runtime's transaction: the handler's writes commit atomically with
    the inbox row, and handlers never commit. A handler must let database errors propagate
    (use ``ON CONFLICT`` rather than catching an integrity error): after one, PostgreSQL
    refuses every statement of the transaction. ``attempt`` counts tries across parks,
    from 1.
    """

    session: AsyncSession
    envelope: CloudEvent
    group: str
    attempt: int = 1

    async def publish(self, data: EventData, *, subject: str, tenant: str) -> CloudEvent:
        """Publish through the outbox, in the same transaction as the handler's effects."""
        return outbox.publish(self.session, data, subject=subject, tenant=tenant)


@dataclass(frozen=True, slots=True)
class _Registration:
    data_class: type[EventData]
    handler: Callable[[Any, HandlerContext], Awaitable[None]]


class _Outcome(Enum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    RETRY = "retry"
    DLQ = "dlq"
    NOT_DUE = "not_due"


class _Duplicate(Exception):
    pass


@dataclass(slots=True)
class _Parsed:
    record: ConsumerRecord[bytes, bytes]
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class _FastPathFailed(Exception):
    """A handler failed in the batch's first pass, at ``where`` (partition, offset)."""

    def __init__(self, where: tuple[TopicPartition, int] | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.where = where
        self.error = error


@dataclass(slots=True)
class _Batch:
    """One fetched batch as it is handled: what to commit and what was already done."""

    parsed: dict[TopicPartition, list[_Parsed]]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    handled: set[str] = field(default_factory=set)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    outcomes: list[tuple[str, _Outcome]] = field(default_factory=list)
    inbox_rows: list[dict[str, Any]] = field(default_factory=list)
    # Records sent to the retry topic or the DLQ: a second pass must not send them again.
    parked: dict[tuple[TopicPartition, int], tuple[str, _Outcome]] = field(default_factory=dict)
    # What a pass committed before the end of the batch (long batches commit on the way).
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    committed_outcomes: list[tuple[str, _Outcome]] = field(default_factory=list)
    failure: _FastPathFailed | None = None

    def is_committed(self, tp: TopicPartition, offset: int) -> bool:
        return offset < self.committed.get(tp, -1)

    def mark_committed(self) -> None:
        self.committed.update(self.offsets)
        self.committed_outcomes.extend(self.outcomes)
        self.outcomes = []
        self.inbox_rows = []

    def all_outcomes(self) -> list[tuple[str, _Outcome]]:
        return self.committed_outcomes + self.outcomes

    def park(self, tp: TopicPartition, offset: int, event_type: str, outcome: _Outcome) -> _Outcome:
        self.parked[(tp, offset)] = (event_type, outcome)
        self.outcomes.append((event_type, outcome))
        return outcome

    def restart(self, failure: _FastPathFailed) -> None:
        """Forget the rolled-back part of the first pass, but not what it parked."""
        self.failure = failure
        self.handled = set()
        self.offsets = dict(self.committed)
        self.outcomes = []
        self.inbox_rows = []

    def failure_at(self, tp: TopicPartition, offset: int) -> BaseException | None:
        if self.failure is None or self.failure.where != (tp, offset):
            return None
        return self.failure.error


class EventConsumer:
    """One consumer group: handlers by event type over a few topics, run by the runtime.

    ``owner`` is the :class:`~kanol_common.runtime.ServiceRuntime` (the consumer adds itself
    to it) or plain settings (then give it to ``runtime.add_consumer``). Topics and the group
    are logical names: ``settings.kafka_topic_prefix`` is prepended to make the physical ones.
    ``before_offset_commit`` is for fault-injection tests: it runs after the database commit
    and before the offsets are committed.
    """

    def __init__(
        self,
        owner: ServiceRuntime | CommonSettings,
        *,
        group_id: str,
        topics: Sequence[str],
        before_offset_commit: FaultHook | None = None,
    ) -> None:
        if not topics:
            raise ValueError("A consumer needs at least one topic.")
        self.settings: CommonSettings = (
            owner if isinstance(owner, CommonSettings) else (owner.settings)
        )
        self.group_id = group_id
        self.topics = tuple(topics)
        self.before_offset_commit = before_offset_commit
        prefix = self.settings.kafka_topic_prefix
        self._physical_group = f"{prefix}{group_id}"
        self._physical_topics = tuple(f"{prefix}{topic}" for topic in self.topics)
        self._retry_topic = f"{self._physical_group}.retry"
        self._dlq_topic = f"{self._physical_group}.dlq"
        self._span_names: dict[str, str] = {}
        self._handlers: dict[str, _Registration] = {}
        self._database: Database | None = None
        self._producer: AIOKafkaProducer | None = None
        self._kafka: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._assigned = asyncio.Event()
        self._paused: dict[TopicPartition, int] = {}
        self._lag: dict[TopicPartition, int] = {}
        # Records by outcome since this object was made (handled, duplicate, ignored, retry,
        # dlq): tests and benches wait on it.
        self.outcomes: Counter[str] = Counter()
        self._latencies: dict[str, Any] = {}
        self._pending_commit: asyncio.Task[None] | None = None
        if not isinstance(owner, CommonSettings):
            owner.add_consumer(self)

    # -- names -------------------------------------------------------------------------

    @property
    def physical_group(self) -> str:
        return self._physical_group

    @property
    def physical_topics(self) -> tuple[str, ...]:
        return self._physical_topics

    @property
    def retry_topic(self) -> str:
        return self._retry_topic

    @property
    def dlq_topic(self) -> str:
        return self._dlq_topic

    # -- registration ------------------------------------------------------------------

    def on(self, event_class: type[E]) -> Callable[[Handler[E]], Handler[E]]:
        """Register the handler of one event type; other types on the topics are skipped."""

        def register(handler: Handler[E]) -> Handler[E]:
            if event_class.event_type in self._handlers:
                raise ValueError(f"{event_class.event_type} already has a handler")
            self._handlers[event_class.event_type] = _Registration(event_class, handler)
            return handler

        return register

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    # -- life --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, database: Database, producer: AIOKafkaProducer) -> None:
        """Join the group and start handling; the runtime calls it."""
        if self._task is not None:
            return
        self._database = database
        self._producer = producer
        self._stopping = False
        self._assigned.clear()
        self._kafka = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.physical_group,
            client_id=f"{self.settings.kafka_client_prefix}-{self.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.consumer_batch_size,
        )
        await self._kafka.start()
        self._kafka.subscribe([*self.physical_topics, self.retry_topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"kanol-consumer-{self.group_id}")
        self._task.add_done_callback(self._on_task_done)
        log.info("consumer.started", group=self.group_id, topics=list(self.physical_topics))

    async def stop(self) -> None:
        """Finish the batch in hand, then leave the group (offsets already committed)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            _, pending = await asyncio.wait({task}, timeout=10)
            if pending:
                task.cancel()
            # A failure of the loop was logged by _on_task_done when it happened.
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(self._finish_commit(), return_exceptions=True)
        if self._kafka is not None:
            kafka, self._kafka = self._kafka, None
            await kafka.stop()
        self._assigned.clear()
        self._paused.clear()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # The loop does not die for a handler or a batch; this is a bug, or a test's fault
        # injection. Readiness reports the consumer as stopped.
        error = task.exception()
        assert error is not None
        log.error(
            "consumer.crashed",
            group=self.group_id,
            exc_info=(type(error), error, error.__traceback__),
        )

    async def wait_assigned(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the group has given this consumer its partitions (tests need it)."""
        await asyncio.wait_for(self._assigned.wait(), timeout)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        kafka = self._kafka
        assert kafka is not None
        failures = 0
        while not self._stopping:
            self._resume_due(kafka)
            batches = await self._fetch(kafka)
            if not batches:
                continue

            try:
                offsets = await self._process(kafka, batches)
            except Exception:
                # The database or the broker failed under the whole batch: nothing of it is
                # committed, so read it again after a pause that grows while it lasts.
                failures += 1
                log.exception("consumer.batch_failed", group=self.group_id, failures=failures)
                self._rewind(kafka, batches)
                await asyncio.sleep(
                    min(30.0, self.settings.consumer_retry_backoff_seconds * 2 ** min(failures, 10))
                )
                continue
            failures = 0

            if self.before_offset_commit is not None:
                await self.before_offset_commit()
            await self._commit_in_background(kafka, offsets)
            self._measure_lag(kafka, batches)
        await self._finish_commit()

    async def _commit_in_background(
        self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        """Commit these offsets while the next batch is handled.

        The previous commit is awaited first, so commits reach the broker in order. A crash
        before a commit lands only redelivers records whose effects the inbox recognises.
        """
        await self._finish_commit()
        if offsets:
            self._pending_commit = asyncio.create_task(self._commit(kafka, offsets))

    async def _finish_commit(self) -> None:
        pending, self._pending_commit = self._pending_commit, None
        if pending is not None:
            await pending

    async def _fetch(
        self, kafka: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        try:
            batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await kafka.getmany(
                timeout_ms=self.settings.consumer_poll_ms,
                max_records=self.settings.consumer_batch_size,
            )
        except KafkaError as exc:
            # aiokafka reconnects by itself; wait a little rather than spin.
            log.warning("consumer.fetch_failed", group=self.group_id, error=str(exc))
            await asyncio.sleep(1.0)
            return {}
        return batches

    def _rewind(
        self,
        kafka: AIOKafkaConsumer,
        batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        assigned = kafka.assignment()
        for tp, records in batches.items():
            if tp in assigned:
                kafka.seek(tp, records[0].offset)

    async def _commit(self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await kafka.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced: the next owner reads these records again, and the inbox
            # recognises those already handled.
            log.warning("consumer.commit_failed", group=self.group_id, error=str(exc))

    def _measure_lag(
        self, kafka: AIOKafkaConsumer, batches: Mapping[TopicPartition, Sequence[Any]]
    ) -> None:
        for tp, records in batches.items():
            highwater = kafka.highwater(tp)
            if highwater is not None:
                self._lag[tp] = max(0, highwater - records[-1].offset - 1)
        CONSUMER_LAG.labels(self.group_id).set(sum(self._lag.values()))

    def _resume_due(self, kafka: AIOKafkaConsumer) -> None:
        if not self._paused:
            return
        now = _now_ms()
        due = [tp for tp, due_at in self._paused.items() if due_at <= now]
        for tp in due:
            del self._paused[tp]
        assigned = kafka.assignment()
        resumable = [tp for tp in due if tp in assigned]
        if resumable:
            kafka.resume(*resumable)

    async def _process(
        self,
        kafka: AIOKafkaConsumer,
        batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    ) -> dict[TopicPartition, int]:
        """Handle a fetched batch; the offsets to commit once it is committed.

        First in one transaction without savepoints, the inbox rows inserted together at the
        end: a few statements per batch besides the handlers' own. If a handler fails, that
        transaction is rolled back and the batch is handled again carefully, each record
        under a savepoint with its own retries, so one failure undoes no other effect.
        """
        batch = _Batch(
            {tp: [_parse(record) for record in records] for tp, records in batches.items()}
        )
        try:
            await self._run_batch(kafka, batch, careful=False)
        except _FastPathFailed as failure:
            batch.restart(failure)
            await self._run_batch(kafka, batch, careful=True)

        self._count(batch.all_outcomes())
        return batch.offsets

    async def _run_batch(self, kafka: AIOKafkaConsumer, batch: _Batch, *, careful: bool) -> None:
        database = self._database
        assert database is not None
        limit = self.settings.consumer_transaction_seconds

        async with database.session() as session:
            batch.handled = await self._already_handled(session, batch.parsed)
            started = time.monotonic()
            for tp, items in batch.parsed.items():
                for item in items:
                    if batch.is_committed(tp, item.record.offset):
                        continue
                    outcome = await self._handle_record(session, kafka, tp, item, batch, careful)
                    if outcome is _Outcome.NOT_DUE:
                        break
                    batch.offsets[tp] = item.record.offset + 1
                    if time.monotonic() - started > limit:
                        # Slow handlers: commit what is done rather than hold the
                        # transaction (and SQLite's single write lock) for the whole batch.
                        await self._commit_transaction(session, batch)
                        started = time.monotonic()
            await self._commit_transaction(session, batch)

    async def _commit_transaction(self, session: AsyncSession, batch: _Batch) -> None:
        if batch.inbox_rows:
            try:
                await session.exec(insert(inbox_table), params=batch.inbox_rows)
            except IntegrityError as exc:
                # Another consumer of the group handled one of them meanwhile (a
                # rebalance): the careful pass recognises which.
                raise _FastPathFailed(None, exc) from exc
        await session.commit()
        batch.mark_committed()

    async def _already_handled(
        self, session: AsyncSession, parsed: Mapping[TopicPartition, Sequence[_Parsed]]
    ) -> set[str]:
        event_ids = {
            item.headers[H_ID]
            for items in parsed.values()
            for item in items
            if item.error is None
            and item.headers.get(H_TYPE) in self._handlers
            and item.headers.get(H_ID)
        }
        if not event_ids:
            return set()

        query = select(inbox_table.c.event_id).where(inbox_table.c.consumer_group == self.group_id)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            # Joined to an unnested array parameter: one statement text whatever the batch
            # size, and a plan that probes the key, where a generic plan of ``IN (...)``
            # compares every row of the inbox with every id.
            candidates = unnest_strings("event_ids", event_ids)
            query = query.join(candidates, inbox_table.c.event_id == candidates.c.value)
        else:
            query = query.where(inbox_table.c.event_id.in_(event_ids))
        result = await session.exec(query)
        return {str(event_id) for event_id in result.all()}

    async def _handle_record(
        self,
        session: AsyncSession,
        kafka: AIOKafkaConsumer,
        tp: TopicPartition,
        item: _Parsed,
        batch: _Batch,
        careful: bool,
    ) -> _Outcome:
        record = item.record
        headers = item.headers
        previous_attempts = 0
        if record.topic == self.retry_topic:
            due_at = _int_header(headers, H_DUE_AT)
            if due_at > _now_ms():
                # Not yet: stop reading this partition until the due time, from this record.
                kafka.pause(tp)
                kafka.seek(tp, record.offset)
                self._paused[tp] = due_at
                return _Outcome.NOT_DUE
            previous_attempts = _int_header(headers, H_ATTEMPTS)

        parked = batch.parked.get((tp, record.offset))
        if parked is not None:
            # Already sent to the retry topic or the DLQ by the first pass over this batch.
            batch.outcomes.append(parked)
            return parked[1]

        registration, cloud_event, failure = self._decode(item)
        if failure is not None:
            event_type = headers.get(H_TYPE, "undecodable")
            await self._park(record, headers, failure, previous_attempts, dlq=True)
            return batch.park(tp, record.offset, event_type, _Outcome.DLQ)
        if registration is None or cloud_event is None:
            batch.outcomes.append((headers.get(H_TYPE, ""), _Outcome.IGNORED))
            return _Outcome.IGNORED
        if cloud_event.id in batch.handled:
            batch.outcomes.append((cloud_event.type, _Outcome.DUPLICATE))
            return _Outcome.DUPLICATE

        # The span and the log fields by hand rather than through context managers: this
        # runs for every record.
        parent = propagate.extract(headers)
        span_name = self._span_names.get(record.topic)
        if span_name is None:
            span_name = self._span_names[record.topic] = f"consume {record.topic}"
        span = tracer.start_span(
            span_name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=self._span_attributes(record, cloud_event),
        )
        trace_token = otel_context.attach(trace.set_span_in_context(span, parent))
        log_tokens = structlog.contextvars.bind_contextvars(
            event_id=cloud_event.id,
            event_type=cloud_event.type,
            tenant=cloud_event.tenant,
            subject=cloud_event.subject,
        )
        try:
            if careful:
                outcome = await self._attempt(
                    session,
                    record,
                    headers,
                    registration,
                    cloud_event,
                    previous_attempts,
                    batch.failure_at(tp, record.offset),
                )
            else:
                outcome = await self._attempt_fast(
                    session, tp, record, registration, cloud_event, previous_attempts, batch
                )
            span.set_attribute("kanol.outcome", outcome.value)
            if outcome in (_Outcome.RETRY, _Outcome.DLQ):
                span.set_status(StatusCode.ERROR)
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            otel_context.detach(trace_token)
            span.end()
        if outcome in (_Outcome.RETRY, _Outcome.DLQ):
            return batch.park(tp, record.offset, cloud_event.type, outcome)
        if outcome in (_Outcome.HANDLED, _Outcome.DUPLICATE):
            batch.handled.add(cloud_event.id)
        batch.outcomes.append((cloud_event.type, outcome))
        return outcome

    def _decode(self, item: _Parsed) -> tuple[_Registration | None, CloudEvent | None, str | None]:
        """The handler and the event of a record, or why it is undecodable.

        A type this consumer has no handler for gives no registration: not for us.
        """
        if item.error is not None:
            return None, None, item.error
        event_type = item.headers.get(H_TYPE)
        if event_type is None:
            return None, None, "UndecodableEvent: missing header ce_type"
        registration = self._handlers.get(event_type)
        if registration is None:
            return None, None, None
        try:
            cloud_event = decode(item.headers, item.record.value, registration.data_class)
        except UndecodableEvent as exc:
            return registration, None, _describe_error(exc)
        return registration, cloud_event, None

    async def _attempt_fast(
        self,
        session: AsyncSession,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        registration: _Registration,
        cloud_event: CloudEvent,
        previous_attempts: int,
        batch: _Batch,
    ) -> _Outcome:
        attempt = previous_attempts + 1
        context = HandlerContext(session, cloud_event, self.group_id, attempt)
        started = time.perf_counter()
        try:
            await registration.handler(cloud_event.data, context)
        except Exception as exc:
            raise _FastPathFailed((tp, record.offset), exc) from exc

        self._latency(cloud_event.type).observe(time.perf_counter() - started)
        batch.inbox_rows.append(
            {
                "consumer_group": self.group_id,
                "event_id": cloud_event.id,
                "event_type": cloud_event.type,
                "handled_at": batch.started_at,
            }
        )
        return _Outcome.HANDLED

    async def _attempt(
        self,
        session: AsyncSession,
        record: ConsumerRecord[bytes, bytes],
        headers: dict[str, str],
        registration: _Registration,
        cloud_event: CloudEvent,
        previous_attempts: int,
        earlier: BaseException | None = None,
    ) -> _Outcome:
        """Try the handler a few times in process; park the record if it still fails.

        ``earlier`` is the failure of this very try in the first pass over the batch: it
        counts as the round's first try.
        """
        settings = self.settings
        tries = max(
            1,
            min(
                settings.consumer_handler_attempts,
                settings.consumer_max_attempts - previous_attempts,
            ),
        )
        attempt = previous_attempts
        error = ""
        first_turn = 1
        if earlier is not None:
            attempt = previous_attempts + 1
            error = self._log_failure(earlier, attempt)
            if isinstance(earlier, NonRetryableError):
                await self._park(record, headers, error, attempt, dlq=True)
                return _Outcome.DLQ
            first_turn = 2
            if tries >= first_turn:
                await asyncio.sleep(settings.consumer_retry_backoff_seconds)

        for turn in range(first_turn, tries + 1):
            attempt = previous_attempts + turn
            started = time.perf_counter()
            try:
                await self._run_handler(session, registration, cloud_event, attempt)
            except _Duplicate:
                return _Outcome.DUPLICATE
            except Exception as exc:
                error = self._log_failure(exc, attempt)
                if isinstance(exc, NonRetryableError):
                    await self._park(record, headers, error, attempt, dlq=True)
                    return _Outcome.DLQ
            else:
                self._latency(cloud_event.type).observe(time.perf_counter() - started)
                return _Outcome.HANDLED
            if turn < tries:
                await asyncio.sleep(settings.consumer_retry_backoff_seconds * 2 ** (turn - 1))

        dlq = attempt >= settings.consumer_max_attempts
        await self._park(record, headers, error, attempt, dlq=dlq)
        return _Outcome.DLQ if dlq else _Outcome.RETRY

    def _log_failure(self, exc: BaseException, attempt: int) -> str:
        error = _describe_error(exc)
        if isinstance(exc, NonRetryableError):
            log.error("event.refused", group=self.group_id, error=error, attempt=attempt)
        elif isinstance(exc, RetryableError):
            log.warning("event.retry", group=self.group_id, error=error, attempt=attempt)
        else:
            # An unexpected exception is a bug, maybe a transient one: retried like a
            # retryable error, then parked, with its traceback logged.
            log.error(
                "event.handler_crashed",
                group=self.group_id,
                attempt=attempt,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        return error

    async def _run_handler(
        self,
        session: AsyncSession,
        registration: _Registration,
        cloud_event: CloudEvent,
        attempt: int,
    ) -> None:
        context = HandlerContext(session, cloud_event, self.group_id, attempt)
        async with session.begin_nested():
            # The inbox row first: a competing consumer of the same group waits on it here,
            # then finds the event handled, rather than run the handler twice.
            try:
                await session.exec(
                    insert(inbox_table).values(
                        consumer_group=self.group_id,
                        event_id=cloud_event.id,
                        event_type=cloud_event.type,
                        handled_at=datetime.now(UTC),
                    )
                )
            except IntegrityError as exc:
                raise _Duplicate from exc
            await registration.handler(cloud_event.data, context)

    # -- parking -----------------------------------------------------------------------

    async def _park(
        self,
        record: ConsumerRecord[bytes, bytes],
        headers: Mapping[str, str],
        error: str,
        attempts: int,
        dlq: bool,
    ) -> None:
        """Send the record to the retry topic or the DLQ, with where it came from."""
        producer = self._producer
        assert producer is not None
        parked = {k: v for k, v in headers.items() if not k.startswith(KANOL_HEADER_PREFIX)}
        parked[H_ORIGINAL_TOPIC] = headers.get(H_ORIGINAL_TOPIC, record.topic)
        parked[H_ORIGINAL_PARTITION] = headers.get(H_ORIGINAL_PARTITION, str(record.partition))
        parked[H_ORIGINAL_OFFSET] = headers.get(H_ORIGINAL_OFFSET, str(record.offset))
        parked[H_ERROR] = error[:2000]
        parked[H_ATTEMPTS] = str(attempts)
        parked[H_GROUP] = self.group_id

        if dlq:
            topic = self.dlq_topic
            parked[H_FAILED_AT] = format_time(datetime.now(UTC))
        else:
            topic = self.retry_topic
            parks = max(0, attempts // max(1, self.settings.consumer_handler_attempts) - 1)
            delay = self.settings.consumer_retry_delay_seconds * 2**parks
            parked[H_DUE_AT] = str(_now_ms() + int(delay * 1000))

        await producer.send_and_wait(
            topic, value=record.value, key=record.key, headers=encode_headers(parked)
        )
        if dlq:
            DLQ_MESSAGES.labels(self.group_id).inc()
            log.error(
                "event.dead_lettered",
                group=self.group_id,
                topic=topic,
                original_topic=parked[H_ORIGINAL_TOPIC],
                error=error,
                attempts=attempts,
            )
        else:
            log.warning(
                "event.parked",
                group=self.group_id,
                topic=topic,
                error=error,
                attempts=attempts,
                due_at=parked[H_DUE_AT],
            )

    # -- helpers -----------------------------------------------------------------------

    def _count(self, outcomes: Sequence[tuple[str, _Outcome]]) -> None:
        for (event_type, outcome), count in Counter(outcomes).items():
            self.outcomes[outcome.value] += count
            EVENTS_CONSUMED.labels(self.group_id, event_type, outcome.value).inc(count)

    def _latency(self, event_type: str) -> Any:
        histogram = self._latencies.get(event_type)
        if histogram is None:
            histogram = HANDLER_LATENCY.labels(self.group_id, event_type)
            self._latencies[event_type] = histogram
        return histogram

    def _span_attributes(
        self, record: ConsumerRecord[bytes, bytes], cloud_event: CloudEvent
    ) -> dict[str, str | int]:
        return {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "consume",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.consumer.group.name": self.physical_group,
            "messaging.message.id": cloud_event.id,
            "messaging.kafka.message.key": cloud_event.subject,
            "messaging.kafka.offset": record.offset,
            "cloudevents.event_type": cloud_event.type,
            "cloudevents.event_subject": cloud_event.subject,
        }

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in list(self._paused):
            if tp not in assigned:
                del self._paused[tp]
        if assigned:
            self._assigned.set()
            log.info("consumer.assigned", group=self.group_id, partitions=len(assigned))

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._paused.pop(tp, None)
            self._lag.pop(tp, None)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.consumer._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer._on_assigned(assigned)


def _parse(record: ConsumerRecord[bytes, bytes]) -> _Parsed:
    try:
        return _Parsed(record, header_map(record.headers))
    except UndecodableEvent as exc:
        return _Parsed(record, {}, f"UndecodableEvent: {exc}")


def _int_header(headers: Mapping[str, str], name: str) -> int:
    try:
        return int(headers.get(name, "0"))
    except ValueError:
        return 0


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _now_ms() -> int:
    return int(time.time() * 1000)

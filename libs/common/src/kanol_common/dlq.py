"""Operator command for a consumer group's dead-letter topic: list, show, replay.

    python -m kanol_common.dlq --group archive list
    python -m kanol_common.dlq --group archive show 12
    python -m kanol_common.dlq --group archive replay --offset 12
    python -m kanol_common.dlq --group archive replay --all

The broker and the topic prefix come from the usual settings (``KANOL_KAFKA_BOOTSTRAP``,
``KANOL_KAFKA_TOPIC_PREFIX``) unless given as options. Replaying republishes the original
record (key, value, CloudEvents headers) to its original topic: the consumers' inbox skips
it if it had in fact been handled, so a replay is safe. The DLQ keeps the message; replay
does not remove it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from kanol_common.consumer import (
    H_ATTEMPTS,
    H_ERROR,
    H_FAILED_AT,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    KANOL_HEADER_PREFIX,
)
from kanol_common.envelope import H_ID, H_TYPE, encode_headers
from kanol_common.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a DLQ topic, with its headers as text."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def original_topic(self) -> str | None:
        return self.headers.get(H_ORIGINAL_TOPIC)

    def original_headers(self) -> dict[str, str]:
        """The headers the record had before it was parked."""
        return {k: v for k, v in self.headers.items() if not k.startswith(KANOL_HEADER_PREFIX)}

    def summary(self) -> str:
        headers = self.headers
        origin = (
            f"{headers.get(H_ORIGINAL_TOPIC, '?')}[{headers.get(H_ORIGINAL_PARTITION, '?')}]"
            f"@{headers.get(H_ORIGINAL_OFFSET, '?')}"
        )
        return (
            f"{self.partition}:{self.offset}  {headers.get(H_FAILED_AT, '-')}  "
            f"type={headers.get(H_TYPE, '-')} id={headers.get(H_ID, '-')}  from {origin}  "
            f"attempts={headers.get(H_ATTEMPTS, '-')}  error={headers.get(H_ERROR, '-')}"
        )


def dlq_topic(settings: CommonSettings, group: str) -> str:
    return f"{settings.kafka_topic_prefix}{group}.dlq"


async def read_dead_letters(
    settings: CommonSettings, group: str, *, wait_seconds: float = 10.0
) -> list[DeadLetter]:
    """Every message on the group's DLQ, from the beginning to the current end."""
    topic = dlq_topic(settings, group)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return []
        # Without a group, subscribing assigns every partition of the topic to us.
        consumer.subscribe([topic])
        assigned = await _assignment(consumer, wait_seconds)
        ends = await consumer.end_offsets(assigned)
        letters = await _read_until(consumer, ends, wait_seconds)
    finally:
        await consumer.stop()
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


async def _assignment(consumer: AIOKafkaConsumer, wait_seconds: float) -> list[TopicPartition]:
    deadline = time.monotonic() + wait_seconds
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("no partition of the DLQ was assigned")
        await asyncio.sleep(0.05)
    return sorted(consumer.assignment())


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], wait_seconds: float
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + wait_seconds
    remaining = {tp for tp, end in ends.items() if end > 0}
    while remaining and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            letters.extend(_letter(record) for record in records if record.offset < ends[tp])
            if records and records[-1].offset + 1 >= ends[tp]:
                remaining.discard(tp)
    return letters


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = {
        name: value.decode(errors="replace") for name, value in record.headers if value is not None
    }
    return DeadLetter(record.partition, record.offset, record.key, record.value, headers)


async def replay(settings: CommonSettings, letters: Sequence[DeadLetter]) -> int:
    """Republish ``letters`` to their original topics; how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    sent = 0
    try:
        for letter in letters:
            if letter.original_topic is None:
                continue
            await producer.send_and_wait(
                letter.original_topic,
                value=letter.value,
                key=letter.key,
                headers=encode_headers(letter.original_headers()),
            )
            sent += 1
    finally:
        await producer.stop()
    return sent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kanol_common.dlq", description="Inspect and replay a consumer group's DLQ."
    )
    parser.add_argument("--group", required=True, help="consumer group (logical name)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")
    parser.add_argument("--prefix", help="topic prefix (default: KANOL_KAFKA_TOPIC_PREFIX)")
    parser.add_argument("--partition", type=int, default=0, help="DLQ partition (default 0)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one line per parked message")
    show = commands.add_parser("show", help="every header and the value of one message")
    show.add_argument("offset", type=int)
    replay_parser = commands.add_parser("replay", help="republish to the original topic")
    which = replay_parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", type=int)
    which.add_argument("--all", action="store_true")
    return parser


async def run(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run the command; the exit status."""
    args = _parser().parse_args(argv)
    overrides: dict[str, str] = {}
    if args.bootstrap:
        overrides["kafka_bootstrap"] = args.bootstrap
    if args.prefix is not None:
        overrides["kafka_topic_prefix"] = args.prefix
    settings = CommonSettings(**overrides)  # type: ignore[arg-type]
    letters = await read_dead_letters(settings, args.group)

    if args.command == "list":
        print(f"{len(letters)} message(s) on {dlq_topic(settings, args.group)}", file=out)
        for letter in letters:
            print(letter.summary(), file=out)
        return 0

    if args.command == "replay" and args.all:
        chosen = letters
    else:
        chosen = [
            letter
            for letter in letters
            if letter.offset == args.offset and letter.partition == args.partition
        ]
    if not chosen:
        print(f"no message at offset {args.offset} on partition {args.partition}", file=out)
        return 1

    if args.command == "show":
        _show(chosen[0], out)
        return 0

    sent = await replay(settings, chosen)
    for letter in chosen:
        print(f"replayed {letter.partition}:{letter.offset} to {letter.original_topic}", file=out)
    print(f"{sent} message(s) replayed", file=out)
    return 0


def _show(letter: DeadLetter, out: TextIO) -> None:
    print(f"partition {letter.partition} offset {letter.offset}", file=out)
    print(f"key: {letter.key.decode(errors='replace') if letter.key else '-'}", file=out)
    for name in sorted(letter.headers):
        print(f"{name}: {letter.headers[name]}", file=out)
    print("value:", file=out)
    print(_pretty(letter.value), file=out)


def _pretty(value: bytes | None) -> str:
    if value is None:
        return "-"
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        return repr(value)


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()

"""The reminders service written the way the Todo chatbot's Python services are:
asyncio, aiokafka, Pydantic models, and manual commits after delivery.

Consumes task events, validates them, derives reminders (the same rules as the
reminder-deriver plugin: a UUIDv5 reminder id, 15 minutes of lead time), produces
reminders and sends invalid events to a dead-letter topic. Offsets of a batch are
committed only once every record produced for that batch is acknowledged.

    python service.py --brokers HOST:PORT --input T --output T --dlq T --group G
"""

import argparse
import asyncio
import signal
import uuid
from datetime import datetime, timedelta, timezone
from typing import Literal, Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, ValidationError, field_validator

ID_NAMESPACE = uuid.UUID("6b1d2f0e-8a4c-4e57-9d0e-5c1f7a2b3c4d")
LEAD_TIME = timedelta(minutes=15)


def derive_id(*parts: str) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, "/".join(parts))


def format_utc(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class Task(BaseModel):
    task_id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: Optional[str] = None
    status: Literal["pending", "in_progress", "completed"]
    priority: Literal["low", "medium", "high"]
    due_date: Optional[datetime] = None

    @field_validator("title")
    @classmethod
    def title_not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("must not be empty")
        return title


class TaskEvent(BaseModel):
    event_id: uuid.UUID
    event_type: Literal["task.created", "task.updated", "task.completed", "task.deleted"]
    timestamp: datetime
    version: str
    correlation_id: uuid.UUID
    payload: Task

    @field_validator("version")
    @classmethod
    def major_version_1(cls, version: str) -> str:
        if version.split(".")[0] != "1":
            raise ValueError(f"unsupported version {version!r}")
        return version


class ReminderPayload(BaseModel):
    reminder_id: str
    task_id: str
    user_id: str
    scheduled_time: str
    message: str


class Reminder(BaseModel):
    event_id: str
    event_type: Literal["reminder.scheduled", "reminder.cancelled"]
    timestamp: str
    version: str
    correlation_id: str
    payload: ReminderPayload


def derive(event: TaskEvent) -> Optional[Reminder]:
    task = event.payload
    if task.due_date is None:
        return None
    remind_at = task.due_date - LEAD_TIME
    if event.event_type in ("task.created", "task.updated"):
        if task.status == "completed":
            return None
        event_type = "reminder.scheduled"
        scheduled = max(remind_at, event.timestamp)
        message = f'Reminder: "{task.title}" is due at {format_utc(task.due_date)}'
    else:
        event_type = "reminder.cancelled"
        scheduled = remind_at
        ended = "completed" if event.event_type == "task.completed" else "deleted"
        message = f'Reminder cancelled: "{task.title}" was {ended}'
    return Reminder(
        event_id=str(derive_id("reminder-event", str(event.event_id))),
        event_type=event_type,
        timestamp=format_utc(event.timestamp),
        version=event.version,
        correlation_id=str(event.correlation_id),
        payload=ReminderPayload(
            reminder_id=str(derive_id("reminder", str(task.task_id), format_utc(task.due_date))),
            task_id=str(task.task_id),
            user_id=str(task.user_id),
            scheduled_time=format_utc(scheduled),
            message=message,
        ),
    )


async def handle(producer: AIOKafkaProducer, args, record) -> Optional[asyncio.Future]:
    """Validates and derives one record; returns the delivery future of its output."""
    try:
        event = TaskEvent.model_validate_json(record.value or b"")
    except ValidationError as error:
        reason = str(error.errors()[0]["msg"]).encode()
        return await producer.send(
            args.dlq,
            key=record.key,
            value=record.value,
            headers=[("dlq.reason", reason)],
        )
    reminder = derive(event)
    if reminder is None:
        return None
    return await producer.send(
        args.output,
        key=str(event.payload.user_id).encode(),
        value=reminder.model_dump_json().encode(),
        headers=[
            ("event_type", reminder.event_type.encode()),
            ("correlation_id", reminder.correlation_id.encode()),
        ],
    )


async def main(args) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.brokers,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,  # as weir and the Rust loops
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.brokers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            deliveries = []
            offsets = {}
            for partition, records in batches.items():
                for record in records:
                    delivery = await handle(producer, args, record)
                    if delivery is not None:
                        deliveries.append(delivery)
                    offsets[partition] = record.offset + 1
            if deliveries:
                await asyncio.gather(*deliveries)
            if offsets:
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--brokers", "--input", "--output", "--dlq", "--group"):
        parser.add_argument(flag, required=True)
    asyncio.run(main(parser.parse_args()))

"""Native unit tests of the stateful deriver, one per row of the table in
docs/design/state-and-timers.md ("The Todo deriver"), and its timer:

    PYTHONPATH=../../../../plugins/sdk-python python3 -m unittest

The expected values are literal bytes, the same as in the JavaScript port's
plugin.test.js, so both ports are held to one output.
"""

import json
import unittest

import app
from weir_plugin import Config, Event, FiredTimer, Header, Invalid, Output, Transient, state, testing

USER = "a11ce000-0000-4000-8000-000000000001"
TASK = "7e57c0de-0000-4000-8000-000000000001"
NAME = f"reminder:{TASK}"
CORRELATION = "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
FIRST, SECOND = "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10", "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f11"
# The reminders of the due dates 2026-11-27T17:00Z and 2026-11-28T17:00Z (lead time 15m).
R1, R2 = "a0c1f393-f6b8-5530-9b5d-e313ee50634e", "0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da"
R1_AT = 1795797900000  # 2026-11-27T16:45:00Z
R2_AT = 1795884300000  # 2026-11-28T16:45:00Z

SCHEDULED_1 = (
    '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"19f7fdb5-9c37-5b9b-977a-45f5b65b4746",'
    '"event_type":"reminder.scheduled","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",'
    '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",'
    '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},'
    '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}'
)
ENTRY_1 = (
    '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",'
    '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",'
    '"task_id":"7e57c0de-0000-4000-8000-000000000001","title":"Buy milk","user_id":"a11ce000-0000-4000-8000-000000000001",'
    '"version":"1.0"}'
)
SCHEDULED_2 = (
    '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"41641d54-bc54-5b8a-8649-c1a5e01dc052",'
    '"event_type":"reminder.scheduled","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-28T17:00:00.000Z",'
    '"reminder_id":"0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da","scheduled_time":"2026-11-28T16:45:00.000Z",'
    '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},'
    '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}'
)
ENTRY_2 = (
    '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","message":"Reminder: \\"Buy milk\\" is due at 2026-11-28T17:00:00.000Z",'
    '"reminder_id":"0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da","scheduled_time":"2026-11-28T16:45:00.000Z",'
    '"task_id":"7e57c0de-0000-4000-8000-000000000001","title":"Buy milk","user_id":"a11ce000-0000-4000-8000-000000000001",'
    '"version":"1.0"}'
)


def cancelled_1(why):
    """`reminder.cancelled` of the stored R1, caused by the event SECOND."""
    return (
        '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"ae21896a-9cb0-5da5-8399-95dd9e9c5fda",'
        f'"event_type":"reminder.cancelled","payload":{{"message":"Reminder cancelled: \\"Buy milk\\" was {why}",'
        '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",'
        '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},'
        '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}'
    )


def stateless_cancelled_1(why):
    """`reminder.cancelled` of R1 as the stateless deriver emitted it, for the event FIRST."""
    return (
        '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"19f7fdb5-9c37-5b9b-977a-45f5b65b4746",'
        f'"event_type":"reminder.cancelled","payload":{{"message":"Reminder cancelled: \\"Buy milk\\" was {why}",'
        '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",'
        '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},'
        '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}'
    )


TRIGGERED_1 = (
    '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"725c1aa6-70de-5810-b887-6e24d2449ceb",'
    '"event_type":"reminder.triggered","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",'
    '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",'
    '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},'
    '"timestamp":"2026-11-27T16:45:00.000Z","version":"1.0"}'
)


# The events that end a task's reminder: (event_type, status, the message's word).
ENDS = (
    ("task.updated", "completed", "completed"),
    ("task.completed", "completed", "completed"),
    ("task.deleted", "pending", "deleted"),
    ("task.deleted", "completed", "deleted"),
)


def task_event(event_type, status="pending", due="2026-11-27T18:00:00+01:00", event_id=FIRST, title="Buy milk"):
    value = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": "2026-11-26T09:00:00Z",
        "version": "1.0",
        "correlation_id": CORRELATION,
        "payload": {
            "task_id": TASK,
            "user_id": USER,
            "title": title,
            "status": status,
            "priority": "high",
            "due_date": due,
        },
    }
    return Event(key=USER, value=json.dumps(value), topic="task-events", partition=3)


def output(value):
    kind = json.loads(value)["event_type"]
    return Output(
        "reminders",
        key=USER,
        value=value,
        headers=[Header("event_type", kind), Header("correlation_id", CORRELATION)],
    )


class DeriverTest(unittest.TestCase):
    def setUp(self):
        self.host = testing.reset(now_ms=1795000000000)  # 2026-11-18T...: before every reminder
        app.init(Config([]))

    def handle(self, event):
        return self.host.handle(app.handle_event, event)

    def schedule_r1(self):
        self.assertEqual(self.handle(task_event("task.created")), [output(SCHEDULED_1)])

    def assert_r1_stored(self):
        self.assertEqual(self.host.entries_of(USER), {NAME: ENTRY_1.encode()})
        self.assertEqual(self.host.timers_of(USER), {NAME: (R1_AT, R1.encode())})

    def assert_nothing_stored(self):
        self.assertEqual(self.host.entries_of(USER), {})
        self.assertEqual(self.host.timers_of(USER), {})

    # --- task.created / task.updated, status not completed, with due_date

    def test_a_due_date_schedules_and_stores_the_reminder(self):
        self.schedule_r1()
        self.assert_r1_stored()

    def test_the_same_reminder_again_is_nothing(self):
        self.schedule_r1()
        # The same instant in another offset, a new title, another status: the same reminder.
        again = task_event("task.updated", "in_progress", "2026-11-27T17:00:00Z", SECOND, title="Buy oat milk")
        self.assertEqual(self.handle(again), [])
        self.assert_r1_stored()

    def test_another_due_date_cancels_then_schedules(self):
        self.schedule_r1()
        moved = task_event("task.updated", due="2026-11-28T18:00:00+01:00", event_id=SECOND)
        self.assertEqual(self.handle(moved), [output(cancelled_1("rescheduled")), output(SCHEDULED_2)])
        self.assertEqual(self.host.entries_of(USER), {NAME: ENTRY_2.encode()})
        self.assertEqual(self.host.timers_of(USER), {NAME: (R2_AT, R2.encode())})

    # --- task.created / task.updated, status not completed, no due_date

    def test_a_removed_due_date_cancels(self):
        self.schedule_r1()
        self.assertEqual(self.handle(task_event("task.updated", due=None, event_id=SECOND)), [output(cancelled_1("unscheduled"))])
        self.assert_nothing_stored()

    def test_no_due_date_and_nothing_stored_is_nothing(self):
        self.assertEqual(self.handle(task_event("task.created", due=None)), [])
        self.assertEqual(self.handle(task_event("task.updated", "in_progress", due=None, event_id=SECOND)), [])
        self.assert_nothing_stored()

    # --- task.updated to completed, task.completed, task.deleted

    def test_an_end_cancels_the_stored_reminder(self):
        for event_type, status, why in ENDS:
            with self.subTest(event_type):
                self.host = testing.reset(now_ms=1795000000000)
                self.schedule_r1()
                # The event's own due date does not matter: the stored reminder is cancelled.
                end = task_event(event_type, status, due=None, event_id=SECOND)
                self.assertEqual(self.handle(end), [output(cancelled_1(why))])
                self.assert_nothing_stored()

    def test_an_end_with_nothing_stored_cancels_the_derived_reminder(self):
        for event_type, status, why in ENDS:
            with self.subTest(event_type):
                end = task_event(event_type, status)
                self.assertEqual(self.handle(end), [output(stateless_cancelled_1(why))])
                self.assert_nothing_stored()

    def test_an_end_with_nothing_stored_and_no_due_date_is_nothing(self):
        for event_type, status, _ in ENDS:
            with self.subTest(event_type):
                self.assertEqual(self.handle(task_event(event_type, status, due=None)), [])
                self.assert_nothing_stored()

    def test_a_task_created_completed_is_an_end(self):
        # Not in the design's table: taken as task.updated to completed is (as the Rust plugin does).
        self.assertEqual(self.handle(task_event("task.created", "completed")), [output(stateless_cancelled_1("completed"))])
        self.schedule_r1()
        created_done = task_event("task.created", "completed", due=None, event_id=SECOND)
        self.assertEqual(self.handle(created_done), [output(cancelled_1("completed"))])
        self.assert_nothing_stored()

    def test_an_unreadable_entry_counts_as_absent(self):
        for stored in (b"{", b"\xff", b"[]", ENTRY_1.replace('"title":"Buy milk",', "").encode(), ENTRY_1.replace('"1.0"', "1").encode()):
            with self.subTest(stored):
                self.host = testing.reset(now_ms=1795000000000)
                self.host.key = USER
                state.set(NAME, stored)
                self.schedule_r1()
                self.assert_r1_stored()
                state.set(NAME, stored)
                self.assertEqual(app.handle_timer(FiredTimer(NAME, R1_AT, R1, key=USER)), [])

    # --- the timer

    def test_the_timer_fires_at_the_scheduled_time(self):
        self.schedule_r1()
        self.host.now_ms = R1_AT - 1
        self.assertEqual(self.host.fire_due(app.handle_timer), [])
        self.host.now_ms = R1_AT
        self.assertEqual(self.host.fire_due(app.handle_timer), [output(TRIGGERED_1)])
        self.assert_nothing_stored()
        # Forgotten: a later end of the task cancels only what its own due date names.
        self.assertEqual(self.handle(task_event("task.deleted", due=None, event_id=SECOND)), [])

    def test_a_fired_timer_gives_the_same_bytes_again(self):
        self.schedule_r1()
        self.host.key = USER.encode()
        timer = FiredTimer(NAME, R1_AT + 5000, R1, key=USER, topic="task-events", partition=3)
        first = app.handle_timer(timer)
        state.set(NAME, ENTRY_1)  # as before a retry of the same timer (its first try dead-lettered)
        self.assertEqual(app.handle_timer(timer), first)
        self.assertEqual(first, [output(TRIGGERED_1)])

    def test_a_stale_timer_is_nothing(self):
        self.schedule_r1()
        self.host.key = USER.encode()
        stale = FiredTimer(NAME, R1_AT, R2, key=USER)
        self.assertEqual(app.handle_timer(stale), [])
        self.assertEqual(self.host.entries_of(USER), {NAME: ENTRY_1.encode()})
        gone = FiredTimer("reminder:7e57c0de-0000-4000-8000-000000000009", R1_AT, R1, key=USER)
        self.assertEqual(app.handle_timer(gone), [])

    def test_a_reminder_due_already_is_timed_at_the_event(self):
        # 2026-11-26T09:05Z minus 15m is before the event (09:00Z): scheduled at 09:00Z.
        [out] = self.handle(task_event("task.created", due="2026-11-26T09:05:00Z"))
        self.assertEqual(json.loads(out.value)["payload"]["scheduled_time"], "2026-11-26T09:00:00.000Z")
        [(due, _)] = self.host.timers_of(USER).values()
        self.assertEqual(due, 1795683600000)  # 2026-11-26T09:00:00Z
        self.assertEqual(len(self.host.fire_due(app.handle_timer)), 0)
        self.host.now_ms = due
        [fired] = self.host.fire_due(app.handle_timer)
        self.assertEqual(json.loads(fired.value)["timestamp"], "2026-11-26T09:00:00.000Z")

    # --- the span

    def test_each_reminder_is_an_event_of_the_span(self):
        self.schedule_r1()
        moved = task_event("task.updated", due="2026-11-28T18:00:00+01:00", event_id=SECOND)
        self.handle(moved)
        r1 = {"todo.task_id": TASK, "todo.reminder_id": R1, "todo.scheduled_time": "2026-11-27T16:45:00.000Z"}
        r2 = {"todo.task_id": TASK, "todo.reminder_id": R2, "todo.scheduled_time": "2026-11-28T16:45:00.000Z"}
        self.assertEqual(self.host.span.events, [("reminder.cancelled", r1), ("reminder.scheduled", r2)])
        self.host.now_ms = R2_AT
        self.host.fire_due(app.handle_timer)
        self.assertEqual(self.host.span.events, [("reminder.triggered", r2)])
        self.assertEqual(self.host.span.attributes, {})

    def test_an_unsampled_span_gets_nothing_and_the_outputs_are_the_same(self):
        self.host.span.recording = False
        self.schedule_r1()
        self.assertEqual(self.host.span.events, [])

    # --- scope and failures

    def test_each_user_has_its_own_reminders(self):
        self.schedule_r1()
        other = task_event("task.deleted", due=None, event_id=SECOND)
        other.key = b"someone-else"
        self.assertEqual(self.handle(other), [])
        self.assert_r1_stored()

    def test_an_invalid_event_changes_nothing(self):
        self.schedule_r1()
        with self.assertRaises(Invalid):
            self.handle(Event(key=USER, value=b'{"event_type": "task.deleted"}'))
        with self.assertRaises(Invalid):
            self.handle(Event(key=USER, value=None))
        self.assert_r1_stored()

    def test_before_init_is_transient(self):
        app.settings = None
        with self.assertRaises(Transient):
            self.handle(task_event("task.created"))
        with self.assertRaises(Transient):
            app.handle_timer(FiredTimer(NAME, R1_AT, R1, key=USER))


if __name__ == "__main__":
    unittest.main()

// task-validator: lets valid task events through unchanged and rejects the rest as
// `invalid`, naming the field and the problem. A port of plugins/task-validator.
//
// Config: `output` (default `valid`) is the logical output name of the passed event,
// for pipelines where the validator is the last stage.
//
// Span: when the call's span is sampled, a valid event's type and task id are set on
// it as `todo.event_type` and `todo.task_id`.
import { Invalid, Output, span } from 'weir-plugin';
import { Rejection, parse } from '../todo-events/todo-events.js';

export const DEFAULT_OUTPUT = 'valid';
let output = DEFAULT_OUTPUT;

export function init(config) {
  output = config.output ?? DEFAULT_OUTPUT;
}

export function handleEvent(event) {
  if (event.value === undefined) throw new Invalid('a tombstone (null value) is not a task event');
  let task;
  try {
    task = parse(event.value); // what validate does, keeping the event
  } catch (e) {
    if (e instanceof Rejection) throw new Invalid(e.message);
    throw e;
  }
  if (span.recording()) {
    span.setAttribute('todo.event_type', task.eventType);
    span.setAttribute('todo.task_id', task.task.taskId);
  }
  return [new Output(output, { key: event.key, value: event.value, headers: event.headers })];
}

// task-validator: lets valid task events through unchanged and rejects the rest as
// `invalid`, naming the field and the problem. A port of plugins/task-validator.
//
// Config: `output` (default `valid`) is the logical output name of the passed event,
// for pipelines where the validator is the last stage.
import { Invalid, Output } from 'weir-plugin';
import { Rejection, validate } from '../todo-events/todo-events.js';

export const DEFAULT_OUTPUT = 'valid';
let output = DEFAULT_OUTPUT;

export function init(config) {
  output = config.output ?? DEFAULT_OUTPUT;
}

export function handleEvent(event) {
  if (event.value === undefined) throw new Invalid('a tombstone (null value) is not a task event');
  try {
    validate(event.value);
  } catch (e) {
    if (e instanceof Rejection) throw new Invalid(e.message);
    throw e;
  }
  return [new Output(output, { key: event.key, value: event.value, headers: event.headers })];
}

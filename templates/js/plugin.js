// {{name}}: a weir plugin that upper-cases the text of each record's value.
//
// Config: `output` (default `out`) is the logical output name of the result.
import { Invalid, Output } from 'weir-plugin';

let output = 'out';

/** The plugin's logic, in a plain function: plugin.test.js runs it natively. */
export function shout(text) {
  return text.toUpperCase();
}

export function init(config) {
  output = config.output ?? 'out';
}

const decoder = new TextDecoder('utf-8', { fatal: true });

export function handleEvent(event) {
  if (event.value === undefined) throw new Invalid('value: a tombstone has no text');
  let text;
  try {
    text = decoder.decode(event.value);
  } catch {
    throw new Invalid('value: not UTF-8 text');
  }
  return [new Output(output, { key: event.key, value: shout(text) })];
}

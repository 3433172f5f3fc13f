// The Todo chatbot's task event: a port of the Rust crate plugins/todo-events.
//
// `validate` is what task-validator needs; `parse` gives a TaskEvent to the other
// plugins. Every rejection names the field and the problem. Output ids are UUIDv5s
// of input ids, never from a clock or a random source, so a replay produces
// byte-identical outputs.
//
// The rules are those of the Rust crate, to the letter, because the plugins must
// accept and reject exactly the same events:
// - JSON as serde_json reads it. Most events go through JSON.parse. A value that
//   could hit one of serde_json's own rules (a lone \uD800 escape, a number that
//   overflows to infinity, more than 127 levels of nesting, bytes that are not
//   UTF-8) goes through `Scanner`, which mirrors the Rust crate's two paths: such
//   oddities are accepted inside unknown fields of an otherwise clean event (serde
//   skips them) and rejected anywhere else.
// - UUIDs as the `uuid` crate parses them (simple, hyphenated, braced, URN; any
//   case), written back lower-case and hyphenated.
// - Timestamps as chrono's parse_from_rfc3339 (`T`, `t` or a space; any number of
//   fractional digits, nanoseconds kept; a `:60` leap second; offsets up to
//   23:59), kept as [Unix seconds, nanoseconds] where a leap second has
//   nanoseconds >= 1e9, exactly as chrono does.

const ID_NAMESPACE = hexBytes('6b1d2f0e8a4c4e579d0e5c1f7a2b3c4d');
export const SUPPORTED_MAJOR = 1;
export const EVENT_TYPES = ['task.created', 'task.updated', 'task.completed', 'task.deleted'];
const STATUSES = ['pending', 'in_progress', 'completed'];
const PRIORITIES = ['low', 'medium', 'high'];

// Rust's char::is_whitespace (Unicode White_Space), for str::trim.
const RUST_TRIM = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** Why an event was rejected; `message` is `field: problem`. */
export class Rejection extends Error {
  constructor(field, problem) {
    super(field ? `${field}: ${problem}` : problem);
    this.field = field;
    this.problem = problem;
  }
}

// --- Small parsers -------------------------------------------------------------------

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function hyphenate(d) {
  return `${d.slice(0, 8)}-${d.slice(8, 12)}-${d.slice(12, 16)}-${d.slice(16, 20)}-${d.slice(20)}`;
}

const HEX32 = /^[0-9a-fA-F]{32}$/;

/** The canonical form of a UUID as uuid::Uuid::try_parse reads it, or null. */
export function parseUuid(text) {
  if (!/^[\x00-\x7f]*$/.test(text)) return null;
  let digits;
  if (text.length === 32) {
    digits = text;
  } else {
    if (text.length === 38 && text[0] === '{' && text[37] === '}') text = text.slice(1, -1);
    else if (text.length === 45 && text.slice(0, 9).toLowerCase() === 'urn:uuid:') text = text.slice(9);
    else if (text.length !== 36) return null;
    if (text[8] !== '-' || text[13] !== '-' || text[18] !== '-' || text[23] !== '-') return null;
    digits = text.slice(0, 8) + text.slice(9, 13) + text.slice(14, 18) + text.slice(19, 23) + text.slice(24);
  }
  return HEX32.test(digits) ? hyphenate(digits.toLowerCase()) : null;
}

function sha1(bytes) {
  const words = new Uint32Array(80);
  const length = bytes.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 4, length * 8);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  let h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) words[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 80; i++) {
      const x = words[i - 3] ^ words[i - 8] ^ words[i - 14] ^ words[i - 16];
      words[i] = (x << 1) | (x >>> 31);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let i = 0; i < 80; i++) {
      let f, k;
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
      else { f = b ^ c ^ d; k = 0xca62c1d6; }
      const t = (((a << 5) | (a >>> 27)) + f + e + k + words[i]) >>> 0;
      e = d; d = c; c = (b << 30) | (b >>> 2); b = a; a = t;
    }
    h0 = (h0 + a) >>> 0; h1 = (h1 + b) >>> 0; h2 = (h2 + c) >>> 0; h3 = (h3 + d) >>> 0; h4 = (h4 + e) >>> 0;
  }
  const out = new Uint8Array(20);
  const ov = new DataView(out.buffer);
  [h0, h1, h2, h3, h4].forEach((h, i) => ov.setUint32(i * 4, h));
  return out;
}

const encoder = new TextEncoder();

/** A UUIDv5 in the crate's namespace of the parts joined by `/`, as text. */
export function deriveId(...parts) {
  const name = encoder.encode(parts.join('/'));
  const input = new Uint8Array(16 + name.length);
  input.set(ID_NAMESPACE);
  input.set(name, 16);
  const h = sha1(input).subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  return hyphenate(Array.from(h, (b) => b.toString(16).padStart(2, '0')).join(''));
}

/** Days since 1970-01-01 of a proleptic Gregorian date (any year). */
function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z) {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

const RFC3339 = /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+\-\u2212])([0-9]{2}):([0-9]{2}))$/;

/**
 * [Unix seconds, nanoseconds] of an RFC 3339 timestamp as chrono parses it; throws an
 * Error with chrono's reason.
 */
export function parseRfc3339(text) {
  const m = RFC3339.exec(text);
  if (!m) {
    throw new Error(encoder.encode(text).length < 19 ? 'premature end of input' : 'input contains invalid characters');
  }
  const [year, month, day, hour, minute] = m.slice(1, 6).map(Number);
  let second = Number(m[6]);
  let nanos = m[7] ? Number(m[7].slice(0, 9).padEnd(9, '0')) : 0;
  if (second === 60) { // a leap second is kept as second 59 plus 1e9 nanoseconds
    second = 59;
    nanos += 1e9;
  }
  let offset = 0;
  if (m[8]) {
    const oh = Number(m[9]), om = Number(m[10]);
    if (om > 59 || oh > 23) throw new Error('input is out of range');
    offset = (oh * 3600 + om * 60) * (m[8] === '+' ? 1 : -1);
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) {
    throw new Error('input is out of range');
  }
  return [daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset, nanos];
}

const pad = (n, width) => String(n).padStart(width, '0');

/**
 * The one way every output writes an instant: UTC, millisecond precision, `Z`
 * (chrono's to_rfc3339_opts(SecondsFormat::Millis, true)).
 */
export function formatUtc([secs, nanos]) {
  const leap = nanos >= 1e9 ? 1 : 0;
  if (leap) nanos -= 1e9;
  const days = Math.floor(secs / 86400);
  const sod = secs - days * 86400;
  const [y, mo, d] = civilFromDays(days);
  const year = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 4);
  return `${year}-${pad(mo, 2)}-${pad(d, 2)}T${pad(Math.floor(sod / 3600), 2)}:${pad(Math.floor(sod / 60) % 60, 2)}:${pad((sod % 60) + leap, 2)}.${pad(Math.floor(nanos / 1e6), 3)}Z`;
}

// chrono's NaiveDate range, in days since the epoch.
const MIN_DAY = daysFromCivil(-262144, 1, 1);
const MAX_DAY = daysFromCivil(262143, 12, 31);

/** Orders two instants. */
export function compare(a, b) {
  return a[0] - b[0] || a[1] - b[1];
}

/**
 * `instant - duration` as chrono's checked_sub_signed computes it, leap seconds
 * included; null when chrono gives None. `seconds` is a bigint (up to u64).
 */
export function minus([secs, frac], seconds, nanos) {
  // Beyond 1e13 s the result leaves chrono's date range (or TimeDelta's) anyway.
  if (seconds > 10_000_000_000_000n) return null;
  const s = Number(seconds);
  if (frac >= 1e9) {
    if (s === 0) return [secs, frac - nanos];
    secs += 1;
    frac -= 1e9;
  }
  secs -= s;
  frac -= nanos;
  if (frac < 0) {
    secs -= 1;
    frac += 1e9;
  }
  const day = Math.floor(secs / 86400);
  return day < MIN_DAY || day > MAX_DAY ? null : [secs, frac];
}

// --- JSON ----------------------------------------------------------------------------

const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// Cheap tests for the inputs that need the scanner (false alarms only cost time).
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const BIG_NUMBER = /[:,[]\s*-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{3}|[0-9]{290})/;

function needsScanner(text) {
  if (SURROGATE_ESCAPE.test(text) || BIG_NUMBER.test(text)) return true;
  let brackets = 0;
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) brackets++;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) brackets++;
  return brackets > 127;
}

/** UTF-8 to text where each byte that is not UTF-8 becomes U+DC80..U+DCFF (like Python's surrogateescape). */
function decodeEscapingBadBytes(bytes) {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (n > 1) {
      try {
        out += strictDecoder.decode(bytes.subarray(i, i + n));
        i += n;
        continue;
      } catch {
        n = 0;
      }
    }
    if (n === 1) out += String.fromCharCode(b);
    else out += String.fromCharCode(0xdc00 + b);
    i += 1;
  }
  return out;
}

function kind(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return 'a boolean';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'string') return 'a string';
  if (Array.isArray(v)) return 'an array';
  return 'an object';
}

const META = Symbol('scanner');
const HEX = /^[0-9a-fA-F]{4}$/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WS = ' \t\n\r';

/**
 * A JSON parser with serde_json's grammar, for the rare inputs above. It notes what
 * would make serde_json's strict parse (the Rust crate's checked path) fail while
 * its skipping of unknown fields (the fast path) would not. Objects carry, under
 * META, their repeated keys, whether a key was refused, and which values were
 * strings with escapes or refused.
 */
class Scanner {
  constructor(text) {
    this.s = text;
    this.i = 0;
    this.strictProblem = null;
  }

  fail(what) {
    throw new Error(`${what} at char ${this.i}`);
  }

  ws() {
    while (this.i < this.s.length && WS.includes(this.s[this.i])) this.i++;
  }

  string() {
    const s = this.s;
    this.i++; // the opening quote
    let out = '';
    let esc = false, bad = false, high = false;
    for (;;) {
      if (this.i >= s.length) this.fail('EOF while parsing a string');
      const c = s[this.i];
      if (c === '\\' && s[this.i + 1] === 'u') {
        esc = true;
        const h = s.slice(this.i + 2, this.i + 6);
        if (!HEX.test(h)) this.fail('invalid escape');
        this.i += 6;
        const n = parseInt(h, 16);
        if (high) {
          high = false;
          if (n >= 0xdc00 && n <= 0xdfff) {
            out += String.fromCharCode(n);
            continue;
          }
          bad = true;
        }
        if (n >= 0xdc00 && n <= 0xdfff) bad = true;
        high = n >= 0xd800 && n <= 0xdbff;
        out += String.fromCharCode(n);
        continue;
      }
      if (high) { // anything but a low surrogate escape after a high one
        bad = true;
        high = false;
      }
      if (c === '"') {
        this.i++;
        break;
      }
      if (c === '\\') {
        esc = true;
        const e = s[this.i + 1];
        if (e === undefined) this.fail('EOF while parsing a string');
        const map = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (!(e in map)) this.fail('invalid escape');
        out += map[e];
        this.i += 2;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20) this.fail('control character while parsing a string');
      if (code >= 0xd800 && code <= 0xdfff) {
        // In the source text only a byte that is not UTF-8 is a lone surrogate (a
        // real pair is two code units: take both).
        const next = s.charCodeAt(this.i + 1);
        if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff && code < 0xdc00) {
          out += c + s[this.i + 1];
          this.i += 2;
          continue;
        }
        bad = true;
      }
      out += c;
      this.i++;
    }
    return { value: out, esc, bad };
  }

  key(obj) {
    this.ws();
    if (this.s[this.i] !== '"') this.fail('key must be a string');
    const k = this.string();
    const meta = obj[META];
    if (k.bad) {
      meta.badKeys = true;
      this.strictProblem ??= 'invalid string';
    }
    if (Object.prototype.hasOwnProperty.call(obj, k.value)) meta.dups.add(k.value);
    this.ws();
    if (this.s[this.i] !== ':') this.fail('expected `:`');
    this.i++;
    return k.value;
  }

  value() {
    const stack = []; // [container, pending key]
    let depth = 0;
    for (;;) {
      this.ws();
      if (this.i >= this.s.length) this.fail('EOF while parsing a value');
      const c = this.s[this.i];
      let v, flags = null;
      if (c === '{' || c === '[') {
        this.i++;
        depth++;
        if (depth > 127) this.strictProblem ??= 'recursion limit exceeded';
        let container;
        if (c === '{') {
          container = {};
          Object.defineProperty(container, META, { value: { dups: new Set(), badKeys: false, esc: new Map(), bad: new Map() } });
        } else {
          container = [];
        }
        this.ws();
        if (this.s[this.i] === (c === '{' ? '}' : ']')) {
          this.i++;
          depth--;
          v = container;
        } else {
          const frame = [container, null];
          stack.push(frame);
          if (c === '{') frame[1] = this.key(container);
          continue;
        }
      } else if (c === '"') {
        flags = this.string();
        v = flags.value;
        if (flags.bad) this.strictProblem ??= 'invalid string';
      } else if (c === '-' || (c >= '0' && c <= '9')) {
        NUMBER.lastIndex = this.i;
        const m = NUMBER.exec(this.s);
        if (!m) this.fail('invalid number');
        this.i = NUMBER.lastIndex;
        v = Number(m[0]);
        if (!Number.isFinite(v)) this.strictProblem ??= 'number out of range';
      } else if (this.s.startsWith('null', this.i)) {
        this.i += 4;
        v = null;
      } else if (this.s.startsWith('true', this.i)) {
        this.i += 4;
        v = true;
      } else if (this.s.startsWith('false', this.i)) {
        this.i += 5;
        v = false;
      } else {
        this.fail('expected value');
      }
      // Attach v to its container, closing containers as they end.
      for (;;) {
        if (stack.length === 0) return v;
        const frame = stack[stack.length - 1];
        const [container, key] = frame;
        if (Array.isArray(container)) {
          container.push(v);
        } else {
          Object.defineProperty(container, key, { value: v, enumerable: true, writable: true, configurable: true });
          container[META].esc.set(key, flags ? flags.esc : false);
          container[META].bad.set(key, flags ? flags.bad : false);
        }
        flags = null;
        this.ws();
        if (this.s[this.i] === ',') {
          this.i++;
          if (!Array.isArray(container)) frame[1] = this.key(container);
          break;
        }
        const close = Array.isArray(container) ? ']' : '}';
        if (this.s[this.i] === close) {
          this.i++;
          depth--;
          stack.pop();
          v = container;
          continue;
        }
        this.fail(`expected \`,\` or \`${close}\``);
      }
    }
  }

  document() {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail('trailing characters');
    return v;
  }
}

const ROOT_STRINGS = ['event_id', 'event_type', 'timestamp', 'version', 'correlation_id'];
const TASK_STRINGS = ['task_id', 'user_id', 'title', 'status', 'priority'];
const TASK_OPTIONAL = ['description', 'due_date'];

/** Whether serde would borrow obj[key] as a &str (or, if optional, take null or absence as None). */
function clean(obj, key, optional) {
  const v = Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
  if (v === undefined || v === null) return optional;
  const meta = obj[META];
  return typeof v === 'string' && !meta.esc.get(key) && !meta.bad.get(key);
}

/**
 * Whether the Rust crate's fast path (serde's borrowing deserialisation) would read
 * this event: known fields present once, as strings without escapes.
 */
function fastPathTakes(root) {
  const objectOk = (o, keys) => o !== null && typeof o === 'object' && !Array.isArray(o) && !o[META].badKeys && !keys.some((k) => o[META].dups.has(k));
  if (!objectOk(root, [...ROOT_STRINGS, 'payload']) || !ROOT_STRINGS.every((k) => clean(root, k, false))) return false;
  const p = Object.prototype.hasOwnProperty.call(root, 'payload') ? root.payload : undefined;
  return objectOk(p, [...TASK_STRINGS, ...TASK_OPTIONAL]) && TASK_STRINGS.every((k) => clean(p, k, false)) && TASK_OPTIONAL.every((k) => clean(p, k, true));
}

function anyBadString(v) {
  const stack = [v];
  while (stack.length) {
    const x = stack.pop();
    if (x !== null && typeof x === 'object') {
      if (Array.isArray(x)) stack.push(...x);
      else {
        for (const k of Object.keys(x)) stack.push(x[k]);
        if ([...x[META].bad.values()].some(Boolean)) return true;
      }
    }
  }
  return false;
}

/** [root value, strict] where strict is false when only the fast path can take it. */
function load(bytes) {
  let text = null;
  try {
    text = strictDecoder.decode(bytes);
  } catch {
    text = null;
  }
  if (text !== null && !needsScanner(text)) {
    try {
      return [JSON.parse(text), true];
    } catch (e) {
      throw new Rejection('', `invalid JSON: ${e.message}`);
    }
  }
  const scanner = new Scanner(text ?? decodeEscapingBadBytes(bytes));
  let root;
  try {
    root = scanner.document();
  } catch (e) {
    throw new Rejection('', `invalid JSON: ${e.message}`);
  }
  if (scanner.strictProblem === null && anyBadString(root)) scanner.strictProblem = 'invalid string';
  if (scanner.strictProblem === null) return [root, true];
  if (fastPathTakes(root)) return [root, false];
  throw new Rejection('', `invalid JSON: ${scanner.strictProblem}`);
}

// --- The checked path ----------------------------------------------------------------

const own = (obj, name) => (Object.prototype.hasOwnProperty.call(obj, name) ? obj[name] : undefined);

function stringField(obj, prefix, name) {
  const v = own(obj, name);
  if (v === undefined || v === null) throw new Rejection(prefix + name, 'missing required field');
  if (typeof v !== 'string') throw new Rejection(prefix + name, `expected a string, got ${kind(v)}`);
  return v;
}

function uuidField(obj, prefix, name) {
  const text = stringField(obj, prefix, name);
  const u = parseUuid(text);
  if (u === null) throw new Rejection(prefix + name, `expected a UUID, got ${JSON.stringify(text)}`);
  return u;
}

function oneOf(obj, prefix, name, allowed) {
  const text = stringField(obj, prefix, name);
  if (!allowed.includes(text)) throw new Rejection(prefix + name, `expected one of ${allowed.join('|')}, got ${JSON.stringify(text)}`);
  return text;
}

function rfc3339(field, text) {
  try {
    return parseRfc3339(text);
  } catch (e) {
    throw new Rejection(field, `expected an RFC 3339 timestamp, got ${JSON.stringify(text)} (${e.message})`);
  }
}

function checkVersion(version) {
  const major = version.split('.')[0];
  if (/^\+?[0-9]+$/.test(major) && BigInt(major.replace('+', '')) < 2n ** 64n) {
    const n = BigInt(major.replace('+', ''));
    if (n === BigInt(SUPPORTED_MAJOR)) return;
    throw new Rejection('version', `unsupported major version ${n} (this plugin understands ${SUPPORTED_MAJOR}.x), got ${JSON.stringify(version)}`);
  }
  throw new Rejection('version', `expected "MAJOR.MINOR", got ${JSON.stringify(version)}`);
}

function checked(root) {
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    throw new Rejection('', `expected a JSON object, got ${kind(root)}`);
  }
  const event = {};
  event.eventId = uuidField(root, '', 'event_id');
  event.eventType = oneOf(root, '', 'event_type', EVENT_TYPES);
  event.timestampText = stringField(root, '', 'timestamp');
  event.timestamp = rfc3339('timestamp', event.timestampText);
  event.version = stringField(root, '', 'version');
  checkVersion(event.version);
  event.correlationId = uuidField(root, '', 'correlation_id');

  const payload = own(root, 'payload');
  if (payload === undefined || payload === null) throw new Rejection('payload', 'missing required field');
  if (typeof payload !== 'object' || Array.isArray(payload)) throw new Rejection('payload', `expected an object, got ${kind(payload)}`);
  const p = 'payload.';
  const task = {};
  task.taskId = uuidField(payload, p, 'task_id');
  task.userId = uuidField(payload, p, 'user_id');
  task.title = stringField(payload, p, 'title');
  if (task.title.replace(RUST_TRIM, '') === '') throw new Rejection('payload.title', 'must not be empty');
  const description = own(payload, 'description');
  if (description !== undefined && description !== null && typeof description !== 'string') {
    throw new Rejection('payload.description', `expected a string, got ${kind(description)}`);
  }
  task.description = description ?? null;
  task.status = oneOf(payload, p, 'status', STATUSES);
  task.priority = oneOf(payload, p, 'priority', PRIORITIES);
  const due = own(payload, 'due_date');
  if (due === undefined || due === null) {
    task.dueDate = task.dueDateText = null;
  } else if (typeof due === 'string') {
    task.dueDate = rfc3339('payload.due_date', due);
    task.dueDateText = due;
  } else {
    throw new Rejection('payload.due_date', `expected an RFC 3339 string or null, got ${kind(due)}`);
  }
  event.task = task;
  return event;
}

/**
 * The task event in `bytes` (JSON), or throws a Rejection. Ids are canonical;
 * instants are [Unix seconds, nanoseconds] in UTC.
 */
export function parse(bytes) {
  const [root, strict] = load(bytes);
  if (strict) return checked(root);
  try {
    return checked(root);
  } catch (e) {
    // The Rust crate's checked path would refuse the JSON itself.
    if (e instanceof Rejection) throw new Rejection('', `invalid JSON (and ${e.message})`);
    throw e;
  }
}

/** Throws a Rejection unless `bytes` is a valid task event. */
export function validate(bytes) {
  parse(bytes);
}

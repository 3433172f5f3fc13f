// Durations like `15m`, `1h 30m` or `2.5s`: a port of the Rust crate humantime's
// parse_duration (2.x), which the Rust reminder-deriver uses for `lead-time`, to the
// letter, so both plugins accept the same values and mean the same by them.
// Returns [seconds (bigint), nanoseconds]; throws an Error with humantime's message.

const U64 = 2n ** 64n - 1n;
// Rust's char::is_whitespace (Unicode White_Space).
const WS = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;
const OVERFLOW = 'number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)';

// unit -> [seconds, nanoseconds] per 1; humantime's table (month = 30.44 d, year = 365.25 d)
const UNITS = new Map();
for (const [names, per] of [
  [['nanos', 'nsec', 'ns'], [0n, 1n]],
  [['usec', 'us', '\u00b5s'], [0n, 1000n]],
  [['millis', 'msec', 'ms'], [0n, 1000000n]],
  [['seconds', 'second', 'secs', 'sec', 's'], [1n, 0n]],
  [['minutes', 'minute', 'min', 'mins', 'm'], [60n, 0n]],
  [['hours', 'hour', 'hr', 'hrs', 'h'], [3600n, 0n]],
  [['days', 'day', 'd'], [86400n, 0n]],
  [['weeks', 'week', 'wk', 'wks', 'w'], [604800n, 0n]],
  [['months', 'month', 'M'], [2630016n, 0n]],
  [['years', 'year', 'yr', 'yrs', 'y'], [31557600n, 0n]],
]) {
  for (const name of names) UNITS.set(name, per);
}

const isDigit = (c) => c >= '0' && c <= '9';
const isLetter = (c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '\u00b5';
const isSpace = (c) => WS.test(c);

function mul(a, b) {
  if (a * b > U64) throw new Error(OVERFLOW);
  return a * b;
}

function div(a, b) {
  if (a % b !== 0n) throw new Error(OVERFLOW);
  return a / b;
}

class Parser {
  constructor(text) {
    this.chars = Array.from(text); // code points, as Rust's chars()
    this.i = 0;
    this.secs = 0n;
    this.nanos = 0n;
    this.encoder = new TextEncoder();
  }

  off(i = this.i) {
    return this.encoder.encode(this.chars.slice(0, i).join('')).length;
  }

  next() {
    return this.i < this.chars.length ? this.chars[this.i++] : undefined;
  }

  firstChar() {
    const at = this.off();
    let c;
    while ((c = this.next()) !== undefined) {
      if (isDigit(c)) return BigInt(c);
      if (isSpace(c)) continue;
      throw new Error(`expected number at ${at}`);
    }
    return null;
  }

  fraction(at) {
    let numerator = 0n, denominator = 1n, zeros = true, c;
    while ((c = this.next()) !== undefined) {
      if (c === '0') {
        denominator = mul(denominator, 10n);
        if (!zeros) numerator = mul(numerator, 10n);
      } else if (c >= '1' && c <= '9') {
        zeros = false;
        denominator = mul(denominator, 10n);
        numerator = mul(numerator, 10n) + BigInt(c);
        if (numerator > U64) throw new Error(OVERFLOW);
      } else if (isSpace(c)) {
        // skipped
      } else if (isLetter(c)) {
        break;
      } else {
        throw new Error(`invalid character at ${this.off(at)}`);
      }
      at = this.i;
    }
    if (denominator === 1n) throw new Error(`invalid character at ${this.off(at)}`);
    return [[numerator, denominator], at];
  }

  add(secs, nanos) {
    nanos += this.nanos;
    if (nanos > U64) throw new Error(OVERFLOW);
    if (nanos > 1000000000n) {
      secs += nanos / 1000000000n;
      if (secs > U64) throw new Error(OVERFLOW);
      nanos %= 1000000000n;
    }
    secs += this.secs;
    if (secs > U64) throw new Error(OVERFLOW);
    if (nanos >= 1000000000n) { // Duration::new carries
      secs += 1n;
      nanos -= 1000000000n;
      if (secs > U64) throw new Error('overflow in Duration::new');
    }
    this.secs = secs;
    this.nanos = nanos;
  }

  unit(n, frac, start, end) {
    const name = this.chars.slice(start, end).join('');
    const per = UNITS.get(name);
    if (per === undefined) {
      if (name === '') throw new Error(`time unit needed, for example ${n}sec or ${n}ms`);
      throw new Error(`unknown time unit "${name}", supported units: ns, us/\u00b5s, ms, sec, min, hours, days, weeks, months, years (and few variations)`);
    }
    const [perS, perNs] = per;
    this.add(mul(n, perS), mul(n, perNs));
    if (frac !== null) {
      const [num, den] = frac;
      if (perNs === 1n) throw new Error(OVERFLOW);
      if (perS === 0n) this.add(0n, div(mul(num, perNs), den));
      else if (perS === 1n) this.add(0n, div(mul(num, 1000000000n), den));
      else if (perS === 60n) this.add(0n, div(mul(num, 60000000000n), den));
      else this.add(div(mul(num, perS), den), 0n);
    }
  }

  parse() {
    let n = this.firstChar();
    if (n === null) throw new Error('value was empty');
    for (;;) {
      let frac = null;
      let at = this.i;
      let c;
      while ((c = this.next()) !== undefined) {
        if (isDigit(c)) {
          n = n * 10n + BigInt(c);
          if (n > U64) throw new Error(OVERFLOW);
        } else if (isSpace(c)) {
          // skipped
        } else if (isLetter(c)) {
          break;
        } else if (c === '.') {
          [frac, at] = this.fraction(at);
          break;
        } else {
          throw new Error(`invalid character at ${this.off(at)}`);
        }
        at = this.i;
      }
      const start = at;
      at = this.i;
      let again = false;
      while ((c = this.next()) !== undefined) {
        if (isDigit(c)) {
          this.unit(n, frac, start, at);
          n = BigInt(c);
          again = true;
          break;
        }
        if (isSpace(c)) break;
        if (!isLetter(c)) throw new Error(`invalid character at ${this.off(at)}`);
        at = this.i;
      }
      if (again) continue;
      this.unit(n, frac, start, at);
      n = this.firstChar();
      if (n === null) return [this.secs, Number(this.nanos)];
    }
  }
}

/** [seconds (bigint), nanoseconds] of a humantime duration. */
export function parseDuration(text) {
  if (text === '0') return [0n, 0];
  return new Parser(text).parse();
}

"""The Todo chatbot's task event: a port of the Rust crate plugins/todo-events.

``validate`` is what task-validator needs; ``parse`` gives a ``TaskEvent`` to the
other plugins. Every rejection names the field and the problem. Output ids are
UUIDv5s of input ids, never from a clock or a random source, so a replay
produces byte-identical outputs.

The rules are those of the Rust crate, to the letter, because the two plugins
must accept and reject exactly the same events:

- JSON as serde_json reads it. Most events go through ``json.loads``. A value
  that could hit one of serde_json's own rules (a lone ``\\uD800`` escape, a
  number that overflows to infinity, more than 127 levels of nesting, bytes that
  are not UTF-8) goes through ``_Scanner``, which mirrors the Rust crate's two
  paths: such oddities are accepted inside unknown fields of an otherwise clean
  event (serde skips them) and rejected anywhere else.
- UUIDs as the ``uuid`` crate parses them (simple, hyphenated, braced, URN; any
  case), written back lower-case and hyphenated.
- Timestamps as chrono's ``parse_from_rfc3339`` (``T``, ``t`` or a space; any
  number of fractional digits, nanoseconds kept; a ``:60`` leap second; offsets
  up to 23:59), kept as (Unix seconds, nanoseconds) where a leap second has
  nanoseconds >= 10^9, exactly as chrono does.
"""

import hashlib
import json
import re

ID_NAMESPACE = bytes.fromhex("6b1d2f0e8a4c4e579d0e5c1f7a2b3c4d")
SUPPORTED_MAJOR = 1
EVENT_TYPES = ("task.created", "task.updated", "task.completed", "task.deleted")
STATUSES = ("pending", "in_progress", "completed")
PRIORITIES = ("low", "medium", "high")

# Rust's char::is_whitespace (Unicode White_Space), for str::trim.
_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class Rejection(Exception):
    """Why an event was rejected; ``str()`` gives ``field: problem``."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self):
        return f"{self.field}: {self.problem}" if self.field else self.problem


class Task:
    __slots__ = ("task_id", "user_id", "title", "description", "status", "priority", "due_date", "due_date_text")

    def is_completed(self):
        return self.status == "completed"


class TaskEvent:
    """A task event that passed validation. Ids are canonical (lower-case,
    hyphenated); instants are (Unix seconds, nanoseconds) in UTC."""

    __slots__ = ("event_id", "event_type", "timestamp", "timestamp_text", "version", "correlation_id", "task")


# --- Small parsers ---------------------------------------------------------------------

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def parse_uuid(text):
    """The canonical form of a UUID as ``uuid::Uuid::try_parse`` reads it, or None."""
    if not text.isascii():
        return None
    n = len(text)
    if n == 32:
        digits = text
    else:
        if n == 38 and text[0] == "{" and text[-1] == "}":
            text = text[1:-1]
        elif n == 45 and text[:9].lower() == "urn:uuid:":
            text = text[9:]
        elif n != 36:
            return None
        if text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
            return None
        digits = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
    if not _HEX32.fullmatch(digits):
        return None
    d = digits.lower()
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}"


def derive_id(*parts):
    """A UUIDv5 in ID_NAMESPACE of the parts joined by ``/``, as text."""
    h = bytearray(hashlib.sha1(ID_NAMESPACE + "/".join(parts).encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    d = h.hex()
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}"


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _days_in_month(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+\-\u2212])([0-9]{2}):([0-9]{2}))"
)


def parse_rfc3339(text):
    """(Unix seconds, nanoseconds) of an RFC 3339 timestamp, as chrono parses it;
    raises ValueError with chrono's reason."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError("premature end of input" if len(text.encode("utf-8")) < 19 else "input contains invalid characters")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    nanos = int(m.group(7)[:9].ljust(9, "0")) if m.group(7) else 0
    if second == 60:  # a leap second is kept as second 59 plus 10^9 nanoseconds
        second, nanos = 59, nanos + 1_000_000_000
    offset = 0
    if m.group(8):
        oh, om = int(m.group(9)), int(m.group(10))
        if om > 59 or oh > 23:
            raise ValueError("input is out of range")
        offset = (oh * 3600 + om * 60) * (1 if m.group(8) == "+" else -1)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)) or hour > 23 or minute > 59 or second > 59:
        raise ValueError("input is out of range")
    secs = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return secs, nanos


def format_utc(instant):
    """The one way every output writes an instant: UTC, millisecond precision, ``Z``
    (chrono's ``to_rfc3339_opts(SecondsFormat::Millis, true)``)."""
    secs, nanos = instant
    leap = nanos >= 1_000_000_000
    if leap:
        nanos -= 1_000_000_000
    days, sod = divmod(secs, 86400)
    y, mo, d = _civil_from_days(days)
    year = f"{y:04d}" if 0 <= y <= 9999 else f"{y:+05d}"
    return f"{year}-{mo:02d}-{d:02d}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60 + leap:02d}.{nanos // 1_000_000:03d}Z"


# chrono's NaiveDate range, in days since the epoch.
_MIN_DAY = _days_from_civil(-262144, 1, 1)
_MAX_DAY = _days_from_civil(262143, 12, 31)
_MAX_DELTA_SECS = (2**63 - 1) // 1000  # chrono's TimeDelta::MAX, in seconds
_MAX_DELTA_NANOS = (2**63 - 1) % 1000 * 1_000_000


def minus(instant, seconds, nanos):
    """``instant - duration`` as chrono's ``checked_sub_signed`` computes it, leap
    seconds included; None when chrono gives None."""
    if seconds > _MAX_DELTA_SECS or (seconds == _MAX_DELTA_SECS and nanos > _MAX_DELTA_NANOS):
        return None  # TimeDelta::from_std fails: TimeDelta::MAX, which overflows
    secs, frac = instant
    if frac >= 1_000_000_000:
        if seconds == 0:
            return secs, frac - nanos
        secs, frac = secs + 1, frac - 1_000_000_000
    secs -= seconds
    frac -= nanos
    if frac < 0:
        secs, frac = secs - 1, frac + 1_000_000_000
    if not _MIN_DAY <= secs // 86400 <= _MAX_DAY:
        return None
    return secs, frac


# --- JSON ------------------------------------------------------------------------------


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_no_constants).decode
# Cheap tests for the inputs that need the scanner (false alarms only cost time).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BIG_NUMBER = re.compile(r"[:,\[]\s*-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{3}|[0-9]{290})")


def _needs_scanner(text):
    return (
        ("\\u" in text and _SURROGATE_ESCAPE.search(text) is not None)
        or _BIG_NUMBER.search(text) is not None
        or text.count("[") + text.count("{") > 127
    )


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Str(str):
    """A string from the scanner: ``esc`` if it had a backslash escape, ``bad`` if
    serde_json would refuse it as a str (a lone surrogate, bytes that are not UTF-8)."""

    esc = False
    bad = False


class _Obj(dict):
    """An object from the scanner (last duplicate wins, as in serde_json's Map)."""

    def __init__(self):
        super().__init__()
        self.dups = set()
        self.bad_keys = False


class _Scanner:
    """A JSON parser with serde_json's grammar, for the rare inputs above. It notes
    what would make serde_json's strict parse (the Rust crate's checked path) fail
    while its skipping of unknown fields (the fast path) would not."""

    WS = " \t\n\r"

    def __init__(self, text):
        self.s = text
        self.i = 0
        self.strict_problem = None

    def fail(self, what):
        raise ValueError(f"{what} at char {self.i}")

    def ws(self):
        s, i = self.s, self.i
        while i < len(s) and s[i] in self.WS:
            i += 1
        self.i = i

    def string(self):
        s = self.s
        self.i += 1  # the opening quote
        out = []
        esc = bad = False
        high = False  # the last piece was a \uD800-\uDBFF escape, waiting for its pair
        while True:
            if self.i >= len(s):
                self.fail("EOF while parsing a string")
            c = s[self.i]
            if c == "\\" and s.startswith("u", self.i + 1):
                esc = True
                h = s[self.i + 2 : self.i + 6]
                if len(h) < 4 or not all(ch in "0123456789abcdefABCDEF" for ch in h):
                    self.fail("invalid escape")
                self.i += 6
                n = int(h, 16)
                if high:
                    high = False
                    if 0xDC00 <= n <= 0xDFFF:
                        out[-1] = chr(0x10000 + ((ord(out[-1]) - 0xD800) << 10) + (n - 0xDC00))
                        continue
                    bad = True
                if 0xDC00 <= n <= 0xDFFF:
                    bad = True
                high = 0xD800 <= n <= 0xDBFF
                out.append(chr(n))
                continue
            if high:  # anything but a low surrogate escape after a high one
                bad = True
                high = False
            if c == '"':
                self.i += 1
                break
            if c == "\\":
                esc = True
                e = s[self.i + 1 : self.i + 2]
                if not e:
                    self.fail("EOF while parsing a string")
                if e not in '"\\/bfnrt':
                    self.fail("invalid escape")
                out.append({"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}.get(e, e))
                self.i += 2
                continue
            if c < " ":
                self.fail("control character while parsing a string")
            if "\ud800" <= c <= "\udfff":  # a byte that is not UTF-8 (surrogateescape)
                bad = True
            out.append(c)
            self.i += 1
        value = _Str("".join(out))
        value.esc, value.bad = esc, bad
        return value

    _NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

    def value(self):
        """Parses one value, iteratively (any depth)."""
        stack = []  # [container, pending key]
        depth = 0
        while True:
            self.ws()
            if self.i >= len(self.s):
                self.fail("EOF while parsing a value")
            c = self.s[self.i]
            if c == "{" or c == "[":
                self.i += 1
                depth += 1
                if depth > 127 and self.strict_problem is None:
                    self.strict_problem = "recursion limit exceeded"
                container = _Obj() if c == "{" else []
                self.ws()
                close = "}" if c == "{" else "]"
                if self.i < len(self.s) and self.s[self.i] == close:
                    self.i += 1
                    depth -= 1
                    v = container
                else:
                    stack.append([container, None])
                    if c == "{":
                        stack[-1][1] = self.key(container)
                    continue
            elif c == '"':
                v = self.string()
            elif c == "-" or "0" <= c <= "9":
                m = self._NUMBER.match(self.s, self.i)
                if m is None:
                    self.fail("invalid number")
                self.i = m.end()
                t = m.group()
                if any(ch in t for ch in ".eE") or len(t) > 300:
                    v = float(t)
                    if v in (float("inf"), float("-inf")) and self.strict_problem is None:
                        self.strict_problem = "number out of range"
                else:
                    v = int(t)
            else:
                for word, lit in (("null", None), ("true", True), ("false", False)):
                    if self.s.startswith(word, self.i):
                        self.i += len(word)
                        v = lit
                        break
                else:
                    self.fail("expected value")
            # Attach v to its container, closing containers as they end.
            while True:
                if not stack:
                    return v
                container, key = stack[-1]
                if isinstance(container, dict):
                    container[key] = v
                else:
                    container.append(v)
                self.ws()
                if self.i < len(self.s) and self.s[self.i] == ",":
                    self.i += 1
                    if isinstance(container, dict):
                        stack[-1][1] = self.key(container)
                    break
                close = "}" if isinstance(container, dict) else "]"
                if self.i < len(self.s) and self.s[self.i] == close:
                    self.i += 1
                    depth -= 1
                    stack.pop()
                    v = container
                    continue
                self.fail("expected `,` or `" + close + "`")

    def key(self, obj):
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != '"':
            self.fail("key must be a string")
        k = self.string()
        if k.bad:
            obj.bad_keys = True
            if self.strict_problem is None:
                self.strict_problem = "invalid string"
        if k in obj:
            obj.dups.add(str(k))
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != ":":
            self.fail("expected `:`")
        self.i += 1
        return str(k)

    def document(self):
        v = self.value()
        self.ws()
        if self.i != len(self.s):
            self.fail("trailing characters")
        return v


def _scan_strings_bad(v):
    """Whether any string in v (the scanner's tree) is one serde_json would refuse."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, _Str):
            if x.bad:
                return True
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


_ROOT_STRINGS = ("event_id", "event_type", "timestamp", "version", "correlation_id")
_TASK_STRINGS = ("task_id", "user_id", "title", "status", "priority")
_TASK_OPTIONAL = ("description", "due_date")


def _clean(obj, key, optional):
    """Whether serde would borrow obj[key] as a &str (or, if optional, take null or
    absence as None)."""
    v = obj.get(key)
    if v is None:
        return optional
    return isinstance(v, _Str) and not v.esc and not v.bad


def _fast_path_takes(root):
    """Whether the Rust crate's fast path (serde's borrowing deserialisation) would
    read this event: known fields present once, as strings without escapes."""
    if not isinstance(root, _Obj) or root.bad_keys:
        return False
    if root.dups & set(_ROOT_STRINGS + ("payload",)):
        return False
    if not all(_clean(root, k, False) for k in _ROOT_STRINGS):
        return False
    p = root.get("payload")
    if not isinstance(p, _Obj) or p.bad_keys or p.dups & set(_TASK_STRINGS + _TASK_OPTIONAL):
        return False
    return all(_clean(p, k, False) for k in _TASK_STRINGS) and all(_clean(p, k, True) for k in _TASK_OPTIONAL)


def _load(data):
    """(root value, strict) where strict is False when only the fast path can take it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
    else:
        if not _needs_scanner(text):
            try:
                return _decode(text), True
            except (ValueError, RecursionError) as e:
                raise Rejection("", f"invalid JSON: {e}") from None
    scanner = _Scanner(text)
    try:
        root = scanner.document()
    except ValueError as e:
        raise Rejection("", f"invalid JSON: {e}") from None
    if scanner.strict_problem is None and _scan_strings_bad(root):
        scanner.strict_problem = "invalid string"
    if scanner.strict_problem is None:
        return root, True
    if _fast_path_takes(root):
        return root, False
    raise Rejection("", f"invalid JSON: {scanner.strict_problem}")


# --- The checked path -------------------------------------------------------------------


def _string_field(obj, prefix, name):
    v = obj.get(name)
    if v is None:
        raise Rejection(prefix + name, "missing required field")
    if not isinstance(v, str):
        raise Rejection(prefix + name, f"expected a string, got {_kind(v)}")
    return v


def _uuid_field(obj, prefix, name):
    text = _string_field(obj, prefix, name)
    u = parse_uuid(text)
    if u is None:
        raise Rejection(prefix + name, f"expected a UUID, got {json.dumps(text, ensure_ascii=False)}")
    return u


def _one_of(obj, prefix, name, allowed):
    text = _string_field(obj, prefix, name)
    if text not in allowed:
        raise Rejection(prefix + name, f"expected one of {'|'.join(allowed)}, got {json.dumps(text, ensure_ascii=False)}")
    return text


def _rfc3339(field, text):
    try:
        return parse_rfc3339(text)
    except ValueError as e:
        raise Rejection(field, f"expected an RFC 3339 timestamp, got {json.dumps(text, ensure_ascii=False)} ({e})") from None


_VERSION_MAJOR = re.compile(r"\+?[0-9]+")


def _check_version(version):
    major = version.split(".", 1)[0]
    if _VERSION_MAJOR.fullmatch(major) and int(major) < 2**64:
        n = int(major)
        if n == SUPPORTED_MAJOR:
            return
        raise Rejection(
            "version",
            f"unsupported major version {n} (this plugin understands {SUPPORTED_MAJOR}.x), got {json.dumps(version, ensure_ascii=False)}",
        )
    raise Rejection("version", f'expected "MAJOR.MINOR", got {json.dumps(version, ensure_ascii=False)}')


def _checked(root):
    if not isinstance(root, dict):
        raise Rejection("", f"expected a JSON object, got {_kind(root)}")
    e = TaskEvent()
    e.event_id = _uuid_field(root, "", "event_id")
    e.event_type = _one_of(root, "", "event_type", EVENT_TYPES)
    e.timestamp_text = _string_field(root, "", "timestamp")
    e.timestamp = _rfc3339("timestamp", e.timestamp_text)
    e.version = _string_field(root, "", "version")
    _check_version(e.version)
    e.correlation_id = _uuid_field(root, "", "correlation_id")

    payload = root.get("payload")
    if payload is None:
        raise Rejection("payload", "missing required field")
    if not isinstance(payload, dict):
        raise Rejection("payload", f"expected an object, got {_kind(payload)}")
    p = "payload."
    t = Task()
    t.task_id = _uuid_field(payload, p, "task_id")
    t.user_id = _uuid_field(payload, p, "user_id")
    t.title = _string_field(payload, p, "title")
    if not t.title.strip(_WHITE_SPACE):
        raise Rejection("payload.title", "must not be empty")
    t.description = payload.get("description")
    if t.description is not None and not isinstance(t.description, str):
        raise Rejection("payload.description", f"expected a string, got {_kind(t.description)}")
    t.status = _one_of(payload, p, "status", STATUSES)
    t.priority = _one_of(payload, p, "priority", PRIORITIES)
    due = payload.get("due_date")
    if due is None:
        t.due_date = t.due_date_text = None
    elif isinstance(due, str):
        t.due_date, t.due_date_text = _rfc3339("payload.due_date", due), due
    else:
        raise Rejection("payload.due_date", f"expected an RFC 3339 string or null, got {_kind(due)}")
    e.task = t
    return e


def parse(data):
    """The task event in ``data`` (JSON bytes), or raises ``Rejection``."""
    root, strict = _load(data)
    if strict:
        return _checked(root)
    try:
        return _checked(root)
    except Rejection as r:  # the Rust crate's checked path would refuse the JSON itself
        raise Rejection("", f"invalid JSON (and {r})") from None


def validate(data):
    """Raises ``Rejection`` unless ``data`` is a valid task event."""
    parse(data)

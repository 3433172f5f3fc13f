"""Durations like `15m`, `1h 30m` or `2.5s`: a port of the Rust crate humantime's
`parse_duration` (2.x), which the Rust reminder-deriver uses for `lead-time`, to
the letter, so both plugins accept the same values and mean the same by them.
Returns (seconds, nanoseconds); raises ValueError with humantime's message."""

_U64 = 2**64 - 1
# Rust's char::is_whitespace (Unicode White_Space).
_WS = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_OVERFLOW = "number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)"

# unit -> (seconds, nanoseconds) per 1; humantime's table (month = 30.44 d, year = 365.25 d)
_UNITS = {}
for _names, _per in (
    (("nanos", "nsec", "ns"), (0, 1)),
    (("usec", "us", "\u00b5s"), (0, 1_000)),
    (("millis", "msec", "ms"), (0, 1_000_000)),
    (("seconds", "second", "secs", "sec", "s"), (1, 0)),
    (("minutes", "minute", "min", "mins", "m"), (60, 0)),
    (("hours", "hour", "hr", "hrs", "h"), (3600, 0)),
    (("days", "day", "d"), (86400, 0)),
    (("weeks", "week", "wk", "wks", "w"), (86400 * 7, 0)),
    (("months", "month", "M"), (2_630_016, 0)),
    (("years", "year", "yr", "yrs", "y"), (31_557_600, 0)),
):
    for _name in _names:
        _UNITS[_name] = _per


def _is_letter(c):
    return "a" <= c <= "z" or "A" <= c <= "Z" or c == "\u00b5"


def _mul(a, b):
    if a * b > _U64:
        raise ValueError(_OVERFLOW)
    return a * b


def _div(a, b):
    if a % b:
        raise ValueError(_OVERFLOW)
    return a // b


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0
        self.secs = 0
        self.nanos = 0

    def off(self, i=None):
        return len(self.s[: self.i if i is None else i].encode("utf-8"))

    def next(self):
        if self.i >= len(self.s):
            return None
        c = self.s[self.i]
        self.i += 1
        return c

    def first_char(self):
        at = self.off()
        while (c := self.next()) is not None:
            if "0" <= c <= "9":
                return ord(c) - 48
            if c in _WS:
                continue
            raise ValueError(f"expected number at {at}")
        return None

    def fraction(self, at):
        """The digits after a `.`; `at` is a char index, as is the one returned."""
        numerator, denominator, zeros = 0, 1, True
        while (c := self.next()) is not None:
            if c == "0":
                denominator = _mul(denominator, 10)
                if not zeros:
                    numerator = _mul(numerator, 10)
            elif "1" <= c <= "9":
                zeros = False
                denominator = _mul(denominator, 10)
                numerator = _mul(numerator, 10) + ord(c) - 48
                if numerator > _U64:
                    raise ValueError(_OVERFLOW)
            elif c in _WS:
                pass
            elif _is_letter(c):
                break
            else:
                raise ValueError(f"invalid character at {self.off(at)}")
            at = self.i
        if denominator == 1:
            raise ValueError(f"invalid character at {self.off(at)}")
        return (numerator, denominator), at

    def add(self, secs, nanos):
        nanos += self.nanos
        if nanos > _U64:
            raise ValueError(_OVERFLOW)
        if nanos > 1_000_000_000:
            secs += nanos // 1_000_000_000
            if secs > _U64:
                raise ValueError(_OVERFLOW)
            nanos %= 1_000_000_000
        secs += self.secs
        if secs > _U64:
            raise ValueError(_OVERFLOW)
        if nanos >= 1_000_000_000:  # Duration::new carries
            secs, nanos = secs + 1, nanos - 1_000_000_000
            if secs > _U64:
                raise ValueError("overflow in Duration::new")
        self.secs, self.nanos = secs, nanos

    def unit(self, n, frac, start, end):
        name = self.s[start:end]
        per = _UNITS.get(name)
        if per is None:
            if name == "":
                raise ValueError(f"time unit needed, for example {n}sec or {n}ms")
            raise ValueError(
                f'unknown time unit "{name}", supported units: ns, us/\u00b5s, ms, sec, min, hours, days, '
                "weeks, months, years (and few variations)"
            )
        per_s, per_ns = per
        self.add(_mul(n, per_s), _mul(n, per_ns))
        if frac is not None:
            num, den = frac
            if per_ns == 1:
                raise ValueError(_OVERFLOW)
            if per_s == 0:  # us, ms
                self.add(0, _div(_mul(num, per_ns), den))
            elif per_s == 1:
                self.add(0, _div(_mul(num, 1_000_000_000), den))
            elif per_s == 60:
                self.add(0, _div(_mul(num, 60_000_000_000), den))
            else:
                self.add(_div(_mul(num, per_s), den), 0)

    def parse(self):
        n = self.first_char()
        if n is None:
            raise ValueError("value was empty")
        while True:
            frac = None
            at = self.i
            while (c := self.next()) is not None:
                if "0" <= c <= "9":
                    n = n * 10 + ord(c) - 48
                    if n > _U64:
                        raise ValueError(_OVERFLOW)
                elif c in _WS:
                    pass
                elif _is_letter(c):
                    break
                elif c == ".":
                    frac, at = self.fraction(at)
                    break
                else:
                    raise ValueError(f"invalid character at {self.off(at)}")
                at = self.i
            start = at
            at = self.i
            again = False
            while (c := self.next()) is not None:
                if "0" <= c <= "9":
                    self.unit(n, frac, start, at)
                    n = ord(c) - 48
                    again = True
                    break
                if c in _WS:
                    break
                if not _is_letter(c):
                    raise ValueError(f"invalid character at {self.off(at)}")
                at = self.i
            if again:
                continue
            self.unit(n, frac, start, at)
            n = self.first_char()
            if n is None:
                return self.secs, self.nanos


def parse_duration(text):
    if text == "0":
        return 0, 0
    return _Parser(text).parse()

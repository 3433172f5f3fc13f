package main

// Durations like `15m`, `1h 30m` or `2.5s`: a port of the Rust crate humantime's
// parse_duration (2.x), which the Rust reminder-deriver uses for `lead-time`, to
// the letter, so both plugins accept the same values and mean the same by them.

import (
	"errors"
	"fmt"
	"math/bits"
	"unicode"
	"unicode/utf8"
)

var errOverflow = errors.New("number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)")

// unit -> seconds and nanoseconds per 1 (month = 30.44 d, year = 365.25 d)
var units = map[string][2]uint64{}

func init() {
	for _, u := range []struct {
		names []string
		per   [2]uint64
	}{
		{[]string{"nanos", "nsec", "ns"}, [2]uint64{0, 1}},
		{[]string{"usec", "us", "\u00b5s"}, [2]uint64{0, 1000}},
		{[]string{"millis", "msec", "ms"}, [2]uint64{0, 1_000_000}},
		{[]string{"seconds", "second", "secs", "sec", "s"}, [2]uint64{1, 0}},
		{[]string{"minutes", "minute", "min", "mins", "m"}, [2]uint64{60, 0}},
		{[]string{"hours", "hour", "hr", "hrs", "h"}, [2]uint64{3600, 0}},
		{[]string{"days", "day", "d"}, [2]uint64{86400, 0}},
		{[]string{"weeks", "week", "wk", "wks", "w"}, [2]uint64{604800, 0}},
		{[]string{"months", "month", "M"}, [2]uint64{2_630_016, 0}},
		{[]string{"years", "year", "yr", "yrs", "y"}, [2]uint64{31_557_600, 0}},
	} {
		for _, n := range u.names {
			units[n] = u.per
		}
	}
}

func mul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		panic(errOverflow)
	}
	return lo
}

func add(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		panic(errOverflow)
	}
	return s
}

func div(a, b uint64) uint64 {
	if a%b != 0 {
		panic(errOverflow)
	}
	return a / b
}

func isLetter(c rune) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '\u00b5' }

type durationParser struct {
	s           string
	i           int // byte offset
	secs, nanos uint64
}

func (p *durationParser) next() (rune, bool) {
	if p.i >= len(p.s) {
		return 0, false
	}
	r, size := utf8.DecodeRuneInString(p.s[p.i:])
	p.i += size
	return r, true
}

func (p *durationParser) firstChar() (uint64, bool) {
	at := p.i
	for c, ok := p.next(); ok; c, ok = p.next() {
		switch {
		case c >= '0' && c <= '9':
			return uint64(c - '0'), true
		case unicode.IsSpace(c):
		default:
			panic(fmt.Errorf("expected number at %d", at))
		}
	}
	return 0, false
}

func (p *durationParser) fraction(at int) ([2]uint64, int) {
	numerator, denominator, zeros := uint64(0), uint64(1), true
	for c, ok := p.next(); ok; c, ok = p.next() {
		switch {
		case c == '0':
			denominator = mul(denominator, 10)
			if !zeros {
				numerator = mul(numerator, 10)
			}
		case c >= '1' && c <= '9':
			zeros = false
			denominator = mul(denominator, 10)
			numerator = add(mul(numerator, 10), uint64(c-'0'))
		case unicode.IsSpace(c):
		case isLetter(c):
			goto done
		default:
			panic(fmt.Errorf("invalid character at %d", at))
		}
		at = p.i
	}
done:
	if denominator == 1 {
		panic(fmt.Errorf("invalid character at %d", at))
	}
	return [2]uint64{numerator, denominator}, at
}

func (p *durationParser) addCurrent(secs, nanos uint64) {
	nanos = add(p.nanos, nanos)
	if nanos > 1_000_000_000 {
		secs = add(secs, nanos/1_000_000_000)
		nanos %= 1_000_000_000
	}
	secs = add(p.secs, secs)
	if nanos >= 1_000_000_000 { // Duration::new carries
		secs, nanos = add(secs, 1), nanos-1_000_000_000
	}
	p.secs, p.nanos = secs, nanos
}

func (p *durationParser) unit(n uint64, frac *[2]uint64, start, end int) {
	name := p.s[start:end]
	per, ok := units[name]
	if !ok {
		if name == "" {
			panic(fmt.Errorf("time unit needed, for example %dsec or %dms", n, n))
		}
		panic(fmt.Errorf("unknown time unit %q, supported units: ns, us/\u00b5s, ms, sec, min, hours, days, weeks, months, years (and few variations)", name))
	}
	p.addCurrent(mul(n, per[0]), mul(n, per[1]))
	if frac != nil {
		num, den := frac[0], frac[1]
		switch {
		case per[1] == 1:
			panic(errOverflow)
		case per[0] == 0:
			p.addCurrent(0, div(mul(num, per[1]), den))
		case per[0] == 1:
			p.addCurrent(0, div(mul(num, 1_000_000_000), den))
		case per[0] == 60:
			p.addCurrent(0, div(mul(num, 60_000_000_000), den))
		default:
			p.addCurrent(div(mul(num, per[0]), den), 0)
		}
	}
}

func (p *durationParser) parse() (uint64, uint32) {
	n, ok := p.firstChar()
	if !ok {
		panic(errors.New("value was empty"))
	}
	for {
		var frac *[2]uint64
		at := p.i
	digits:
		for c, ok := p.next(); ok; c, ok = p.next() {
			switch {
			case c >= '0' && c <= '9':
				n = add(mul(n, 10), uint64(c-'0'))
			case unicode.IsSpace(c):
			case isLetter(c):
				break digits
			case c == '.':
				f, end := p.fraction(at)
				frac, at = &f, end
				break digits
			default:
				panic(fmt.Errorf("invalid character at %d", at))
			}
			at = p.i
		}
		start := at
		at = p.i
		again := false
	letters:
		for c, ok := p.next(); ok; c, ok = p.next() {
			switch {
			case c >= '0' && c <= '9':
				p.unit(n, frac, start, at)
				n = uint64(c - '0')
				again = true
				break letters
			case unicode.IsSpace(c):
				break letters
			case !isLetter(c):
				panic(fmt.Errorf("invalid character at %d", at))
			}
			at = p.i
		}
		if again {
			continue
		}
		p.unit(n, frac, start, at)
		if n, ok = p.firstChar(); !ok {
			return p.secs, uint32(p.nanos)
		}
	}
}

// parseDuration returns the seconds and nanoseconds of a humantime duration.
func parseDuration(text string) (secs uint64, nanos uint32, err error) {
	if text == "0" {
		return 0, 0, nil
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			err = e
		}
	}()
	secs, nanos = (&durationParser{s: text}).parse()
	return secs, nanos, nil
}

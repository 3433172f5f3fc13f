package todoevents

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// A JSON parser with serde_json's grammar. Besides the value it notes what would
// make serde_json's strict parse (the Rust crate's checked path) fail while its
// skipping of unknown fields (the fast path) would not: a lone surrogate escape or
// bytes that are not UTF-8 in a string, a number that overflows to infinity, more
// than 127 levels of nesting.
//
// Values: nil, bool, float64, string, []any, *object.

type object struct {
	fields  map[string]any
	dups    map[string]bool // keys seen more than once (the last value wins)
	badKeys bool            // a key serde_json would refuse as a str
	esc     map[string]bool // the string value had a backslash escape
	bad     map[string]bool // the string value would be refused as a str
}

func (o *object) get(key string) (any, bool) {
	v, ok := o.fields[key]
	return v, ok
}

type parser struct {
	s             []byte
	i             int
	strictProblem string // why serde_json's strict parse would fail, if it would
}

type syntaxError struct {
	what string
	at   int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.what, e.at) }

func (p *parser) fail(what string) { panic(&syntaxError{what, p.i}) }

func (p *parser) strict(problem string) {
	if p.strictProblem == "" {
		p.strictProblem = problem
	}
}

func (p *parser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func hexval(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// str parses a string at p.i (the opening quote): its value, whether it had an
// escape, and whether serde_json would refuse it as a str.
func (p *parser) str() (string, bool, bool) {
	p.i++
	start := p.i
	// Fast path: no escapes, ASCII or valid UTF-8, no control characters.
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '"' {
			v := p.s[start:p.i]
			p.i++
			if utf8.Valid(v) {
				return string(v), false, false
			}
			return string(v), false, true
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	out := append([]byte(nil), p.s[start:p.i]...)
	esc, bad, high := false, !utf8.Valid(out), rune(-1)
	for {
		if p.i >= len(p.s) {
			p.fail("EOF while parsing a string")
		}
		c := p.s[p.i]
		if c == '\\' && p.i+1 < len(p.s) && p.s[p.i+1] == 'u' {
			esc = true
			if p.i+6 > len(p.s) {
				p.fail("invalid escape")
			}
			var n rune
			for _, h := range p.s[p.i+2 : p.i+6] {
				d, ok := hexval(h)
				if !ok {
					p.fail("invalid escape")
				}
				n = n<<4 | d
			}
			p.i += 6
			if high >= 0 {
				h := high
				high = -1
				if n >= 0xdc00 && n <= 0xdfff {
					out = utf8.AppendRune(out, 0x10000+(h-0xd800)<<10+(n-0xdc00))
					continue
				}
				bad = true
				out = utf8.AppendRune(out, utf8.RuneError)
			}
			switch {
			case n >= 0xd800 && n <= 0xdbff:
				high = n
			case n >= 0xdc00 && n <= 0xdfff:
				bad = true
				out = utf8.AppendRune(out, utf8.RuneError)
			default:
				out = utf8.AppendRune(out, n)
			}
			continue
		}
		if high >= 0 { // anything but a low surrogate escape after a high one
			bad = true
			high = -1
			out = utf8.AppendRune(out, utf8.RuneError)
		}
		if c == '"' {
			p.i++
			break
		}
		if c == '\\' {
			esc = true
			if p.i+1 >= len(p.s) {
				p.fail("EOF while parsing a string")
			}
			var r byte
			switch e := p.s[p.i+1]; e {
			case '"', '\\', '/':
				r = e
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			default:
				p.fail("invalid escape")
			}
			out = append(out, r)
			p.i += 2
			continue
		}
		if c < 0x20 {
			p.fail("control character while parsing a string")
		}
		r, size := utf8.DecodeRune(p.s[p.i:])
		if r == utf8.RuneError && size <= 1 {
			bad = true // a byte that is not UTF-8
		}
		out = append(out, p.s[p.i:p.i+size]...)
		p.i += size
	}
	return string(out), esc, bad
}

func (p *parser) number() float64 {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		p.fail("invalid number")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			p.fail("invalid number")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.fail("invalid number")
		}
	}
	v, _ := strconv.ParseFloat(string(p.s[start:p.i]), 64)
	if math.IsInf(v, 0) {
		p.strict("number out of range")
	}
	return v
}

type frame struct {
	obj *object
	arr *[]any
	key string
}

// value parses one value, iteratively (any depth).
func (p *parser) value() any {
	var stack []*frame
	depth := 0
	for {
		p.ws()
		if p.i >= len(p.s) {
			p.fail("EOF while parsing a value")
		}
		var v any
		var esc, bad bool
		switch c := p.s[p.i]; {
		case c == '{' || c == '[':
			p.i++
			depth++
			if depth > 127 {
				p.strict("recursion limit exceeded")
			}
			f := &frame{}
			closing := byte(']')
			if c == '{' {
				f.obj = &object{fields: map[string]any{}, dups: map[string]bool{}, esc: map[string]bool{}, bad: map[string]bool{}}
				closing = '}'
			} else {
				f.arr = &[]any{}
			}
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == closing {
				p.i++
				depth--
				if f.obj != nil {
					v = f.obj
				} else {
					v = *f.arr
				}
				break
			}
			stack = append(stack, f)
			if f.obj != nil {
				f.key = p.key(f.obj)
			}
			continue
		case c == '"':
			v, esc, bad = p.str()
			if bad {
				p.strict("invalid string")
			}
		case c == '-' || (c >= '0' && c <= '9'):
			v = p.number()
		case p.lit("null"):
			v = nil
		case p.lit("true"):
			v = true
		case p.lit("false"):
			v = false
		default:
			p.fail("expected value")
		}
		// Attach v to its container, closing containers as they end.
		for {
			if len(stack) == 0 {
				return v
			}
			f := stack[len(stack)-1]
			if f.obj != nil {
				f.obj.fields[f.key] = v
				f.obj.esc[f.key] = esc
				f.obj.bad[f.key] = bad
			} else {
				*f.arr = append(*f.arr, v)
			}
			esc, bad = false, false
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				if f.obj != nil {
					f.key = p.key(f.obj)
				}
				break
			}
			closing := byte(']')
			if f.obj != nil {
				closing = '}'
			}
			if p.i < len(p.s) && p.s[p.i] == closing {
				p.i++
				depth--
				stack = stack[:len(stack)-1]
				if f.obj != nil {
					v = f.obj
				} else {
					v = *f.arr
				}
				continue
			}
			p.fail(fmt.Sprintf("expected `,` or `%c`", closing))
		}
	}
}

func (p *parser) lit(word string) bool {
	if len(p.s)-p.i >= len(word) && string(p.s[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

func (p *parser) key(o *object) string {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		p.fail("key must be a string")
	}
	k, _, bad := p.str()
	if bad {
		o.badKeys = true
		p.strict("invalid string")
	}
	if _, seen := o.fields[k]; seen {
		o.dups[k] = true
	}
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != ':' {
		p.fail("expected `:`")
	}
	p.i++
	return k
}

// parseJSON parses a whole document.
func parseJSON(data []byte) (v any, strictProblem string, err error) {
	p := &parser{s: data}
	defer func() {
		if r := recover(); r != nil {
			var se *syntaxError
			if e, ok := r.(error); ok && errors.As(e, &se) {
				err = se
				return
			}
			panic(r)
		}
	}()
	v = p.value()
	p.ws()
	if p.i != len(p.s) {
		p.fail("trailing characters")
	}
	return v, p.strictProblem, nil
}

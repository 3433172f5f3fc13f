// Package todoevents is the Todo chatbot's task event: a port of the Rust crate
// plugins/todo-events.
//
// Validate is what task-validator needs; Parse gives a TaskEvent to the other
// plugins. Every rejection names the field and the problem. Output ids are UUIDv5s
// of input ids, never from a clock or a random source, so a replay produces
// byte-identical outputs.
//
// The rules are those of the Rust crate, to the letter, because the plugins must
// accept and reject exactly the same events:
//   - JSON as serde_json reads it (json.go): oddities serde_json refuses (a lone
//     \uD800 escape, bytes that are not UTF-8, a number that overflows to infinity,
//     more than 127 levels of nesting) are accepted inside unknown fields of an
//     otherwise clean event, as the Rust crate's fast path skips them, and rejected
//     anywhere else.
//   - UUIDs as the uuid crate parses them (simple, hyphenated, braced, URN; any
//     case), written back lower-case and hyphenated.
//   - Timestamps as chrono's parse_from_rfc3339 (`T`, `t` or a space; any number of
//     fractional digits, nanoseconds kept; a `:60` leap second; offsets up to
//     23:59), kept as an Instant whose Nanos is >= 1e9 in a leap second, as chrono.
package todoevents

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// SupportedMajor is the major schema version these plugins understand.
const SupportedMajor = 1

var (
	idNamespace = mustHex("6b1d2f0e8a4c4e579d0e5c1f7a2b3c4d")
	eventTypes  = []string{"task.created", "task.updated", "task.completed", "task.deleted"}
	statuses    = []string{"pending", "in_progress", "completed"}
	priorities  = []string{"low", "medium", "high"}
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Rejection is why an event was rejected; Error gives `field: problem`.
type Rejection struct {
	Field, Problem string
}

func (r *Rejection) Error() string {
	if r.Field == "" {
		return r.Problem
	}
	return r.Field + ": " + r.Problem
}

func reject(field, format string, args ...any) *Rejection {
	return &Rejection{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Instant is a UTC instant: Unix seconds and nanoseconds; Nanos >= 1e9 is a leap
// second (second 59 of its minute), as chrono keeps it.
type Instant struct {
	Secs, Nanos int64
}

// Compare orders two instants.
func (a Instant) Compare(b Instant) int {
	if a.Secs != b.Secs {
		if a.Secs < b.Secs {
			return -1
		}
		return 1
	}
	switch {
	case a.Nanos < b.Nanos:
		return -1
	case a.Nanos > b.Nanos:
		return 1
	}
	return 0
}

// Task is the task state carried in an event's payload.
type Task struct {
	TaskID, UserID string // canonical UUIDs
	Title          string
	Description    *string
	Status         string
	Priority       string
	DueDate        *Instant
	DueDateText    *string // as received
}

// TaskEvent is a task event that passed validation.
type TaskEvent struct {
	EventID       string // canonical UUID
	EventType     string
	Timestamp     Instant
	TimestampText string // as received
	Version       string
	CorrelationID string // canonical UUID
	Task          Task
}

// --- Small parsers -----------------------------------------------------------------

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if _, ok := hexval(s[i]); !ok {
			return false
		}
	}
	return true
}

func hyphenate(d string) string {
	return d[:8] + "-" + d[8:12] + "-" + d[12:16] + "-" + d[16:20] + "-" + d[20:]
}

// ParseUUID is the canonical form of a UUID as uuid::Uuid::try_parse reads it.
func ParseUUID(text string) (string, bool) {
	var digits string
	switch {
	case len(text) == 32:
		digits = text
	default:
		switch {
		case len(text) == 38 && text[0] == '{' && text[37] == '}':
			text = text[1:37]
		case len(text) == 45 && strings.EqualFold(text[:9], "urn:uuid:"):
			text = text[9:]
		case len(text) != 36:
			return "", false
		}
		if text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-' {
			return "", false
		}
		digits = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
	}
	if len(digits) != 32 || !isHex(digits) {
		return "", false
	}
	return hyphenate(strings.ToLower(digits)), true
}

// DeriveID is a UUIDv5 in the crate's namespace of the parts joined by "/".
func DeriveID(parts ...string) string {
	h := sha1.New()
	h.Write(idNamespace)
	h.Write([]byte(strings.Join(parts, "/")))
	sum := h.Sum(nil)[:16]
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	return hyphenate(hex.EncodeToString(sum))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// daysFromCivil is the number of days since 1970-01-01 of a proleptic Gregorian date.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (int64, int64, int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
	}
	y := yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

func daysInMonth(y, m int64) int64 {
	switch m {
	case 2:
		if (y%4 == 0 && y%100 != 0) || y%400 == 0 {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

var rfc3339 = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+\-\x{2212}])([0-9]{2}):([0-9]{2}))$`)

// ParseRFC3339 reads a timestamp as chrono's parse_from_rfc3339 does; the error is
// chrono's reason.
func ParseRFC3339(text string) (Instant, error) {
	m := rfc3339.FindStringSubmatch(text)
	if m == nil {
		if len(text) < 19 {
			return Instant{}, fmt.Errorf("premature end of input")
		}
		return Instant{}, fmt.Errorf("input contains invalid characters")
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	year, month, day, hour, minute, second := n(m[1]), n(m[2]), n(m[3]), n(m[4]), n(m[5]), n(m[6])
	var nanos int64
	if m[7] != "" {
		frac := m[7]
		if len(frac) > 9 {
			frac = frac[:9]
		}
		nanos = n(frac + strings.Repeat("0", 9-len(frac)))
	}
	if second == 60 { // a leap second is kept as second 59 plus 1e9 nanoseconds
		second, nanos = 59, nanos+1_000_000_000
	}
	var offset int64
	if m[8] != "" {
		oh, om := n(m[9]), n(m[10])
		if om > 59 || oh > 23 {
			return Instant{}, fmt.Errorf("input is out of range")
		}
		offset = oh*3600 + om*60
		if m[8] != "+" {
			offset = -offset
		}
	}
	if month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59 {
		return Instant{}, fmt.Errorf("input is out of range")
	}
	return Instant{daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + second - offset, nanos}, nil
}

// FormatUTC writes an instant the one way every output does: UTC, millisecond
// precision, `Z` (chrono's to_rfc3339_opts(SecondsFormat::Millis, true)).
func FormatUTC(t Instant) string {
	nanos, leap := t.Nanos, int64(0)
	if nanos >= 1_000_000_000 {
		nanos, leap = nanos-1_000_000_000, 1
	}
	days := floorDiv(t.Secs, 86400)
	sod := t.Secs - days*86400
	y, mo, d := civilFromDays(days)
	year := fmt.Sprintf("%04d", y)
	if y < 0 || y > 9999 {
		year = fmt.Sprintf("%+05d", y)
	}
	return fmt.Sprintf("%s-%02d-%02dT%02d:%02d:%02d.%03dZ", year, mo, d, sod/3600, sod/60%60, sod%60+leap, nanos/1_000_000)
}

// chrono's NaiveDate range, in days since the epoch, and TimeDelta::MAX.
var (
	minDay = daysFromCivil(-262144, 1, 1)
	maxDay = daysFromCivil(262143, 12, 31)
)

const (
	maxDeltaSecs  = uint64(1<<63-1) / 1000
	maxDeltaNanos = (1<<63 - 1) % 1000 * 1_000_000
)

// Minus is t - (seconds, nanos) as chrono's checked_sub_signed computes it, leap
// seconds included; false when chrono gives None.
func Minus(t Instant, seconds uint64, nanos uint32) (Instant, bool) {
	if seconds > maxDeltaSecs || (seconds == maxDeltaSecs && nanos > maxDeltaNanos) {
		return Instant{}, false // TimeDelta::from_std fails: TimeDelta::MAX, which overflows
	}
	if seconds > 1e13 { // far outside chrono's date range either way
		return Instant{}, false
	}
	secs, frac := t.Secs, t.Nanos
	if frac >= 1_000_000_000 {
		if seconds == 0 {
			return Instant{secs, frac - int64(nanos)}, true
		}
		secs, frac = secs+1, frac-1_000_000_000
	}
	secs -= int64(seconds)
	frac -= int64(nanos)
	if frac < 0 {
		secs, frac = secs-1, frac+1_000_000_000
	}
	if day := floorDiv(secs, 86400); day < minDay || day > maxDay {
		return Instant{}, false
	}
	return Instant{secs, frac}, true
}

// --- Events ------------------------------------------------------------------------

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

func quote(s string) string { return strconv.Quote(s) }

func stringField(o *object, prefix, name string) (string, error) {
	v, _ := o.get(name)
	switch v := v.(type) {
	case nil:
		return "", reject(prefix+name, "missing required field")
	case string:
		return v, nil
	default:
		return "", reject(prefix+name, "expected a string, got %s", kind(v))
	}
}

func uuidField(o *object, prefix, name string) (string, error) {
	text, err := stringField(o, prefix, name)
	if err != nil {
		return "", err
	}
	u, ok := ParseUUID(text)
	if !ok {
		return "", reject(prefix+name, "expected a UUID, got %s", quote(text))
	}
	return u, nil
}

func oneOf(o *object, prefix, name string, allowed []string) (string, error) {
	text, err := stringField(o, prefix, name)
	if err != nil {
		return "", err
	}
	if !slices.Contains(allowed, text) {
		return "", reject(prefix+name, "expected one of %s, got %s", strings.Join(allowed, "|"), quote(text))
	}
	return text, nil
}

func timestampOf(field, text string) (Instant, error) {
	t, err := ParseRFC3339(text)
	if err != nil {
		return Instant{}, reject(field, "expected an RFC 3339 timestamp, got %s (%v)", quote(text), err)
	}
	return t, nil
}

func checkVersion(version string) error {
	major, _, _ := strings.Cut(version, ".")
	digits := strings.TrimPrefix(major, "+") // Rust's u64 parse takes one leading +
	if n, err := strconv.ParseUint(digits, 10, 64); err == nil && digits != "" && digits[0] != '+' && digits[0] != '-' {
		if n == SupportedMajor {
			return nil
		}
		return reject("version", "unsupported major version %d (this plugin understands %d.x), got %s", n, SupportedMajor, quote(version))
	}
	return reject("version", "expected \"MAJOR.MINOR\", got %s", quote(version))
}

// checked applies every rule in field order, naming the first problem.
func checked(root any) (*TaskEvent, error) {
	o, ok := root.(*object)
	if !ok {
		return nil, reject("", "expected a JSON object, got %s", kind(root))
	}
	var e TaskEvent
	var err error
	if e.EventID, err = uuidField(o, "", "event_id"); err != nil {
		return nil, err
	}
	if e.EventType, err = oneOf(o, "", "event_type", eventTypes); err != nil {
		return nil, err
	}
	if e.TimestampText, err = stringField(o, "", "timestamp"); err != nil {
		return nil, err
	}
	if e.Timestamp, err = timestampOf("timestamp", e.TimestampText); err != nil {
		return nil, err
	}
	if e.Version, err = stringField(o, "", "version"); err != nil {
		return nil, err
	}
	if err = checkVersion(e.Version); err != nil {
		return nil, err
	}
	if e.CorrelationID, err = uuidField(o, "", "correlation_id"); err != nil {
		return nil, err
	}
	pv, _ := o.get("payload")
	var p *object
	switch v := pv.(type) {
	case nil:
		return nil, reject("payload", "missing required field")
	case *object:
		p = v
	default:
		return nil, reject("payload", "expected an object, got %s", kind(v))
	}
	const pre = "payload."
	t := &e.Task
	if t.TaskID, err = uuidField(p, pre, "task_id"); err != nil {
		return nil, err
	}
	if t.UserID, err = uuidField(p, pre, "user_id"); err != nil {
		return nil, err
	}
	if t.Title, err = stringField(p, pre, "title"); err != nil {
		return nil, err
	}
	if strings.TrimFunc(t.Title, unicode.IsSpace) == "" { // Rust's trim: White_Space
		return nil, reject("payload.title", "must not be empty")
	}
	switch d, _ := p.get("description"); d := d.(type) {
	case nil:
	case string:
		t.Description = &d
	default:
		return nil, reject("payload.description", "expected a string, got %s", kind(d))
	}
	if t.Status, err = oneOf(p, pre, "status", statuses); err != nil {
		return nil, err
	}
	if t.Priority, err = oneOf(p, pre, "priority", priorities); err != nil {
		return nil, err
	}
	switch d, _ := p.get("due_date"); d := d.(type) {
	case nil:
	case string:
		due, err := timestampOf("payload.due_date", d)
		if err != nil {
			return nil, err
		}
		t.DueDate, t.DueDateText = &due, &d
	default:
		return nil, reject("payload.due_date", "expected an RFC 3339 string or null, got %s", kind(d))
	}
	return &e, nil
}

var (
	rootStrings  = []string{"event_id", "event_type", "timestamp", "version", "correlation_id"}
	taskStrings  = []string{"task_id", "user_id", "title", "status", "priority"}
	taskOptional = []string{"description", "due_date"}
)

// clean is whether serde would borrow o[key] as a &str (or, if optional, take
// null or absence as None).
func clean(o *object, key string, optional bool) bool {
	v, _ := o.get(key)
	if v == nil {
		return optional
	}
	_, isString := v.(string)
	return isString && !o.esc[key] && !o.bad[key]
}

// fastPathTakes is whether the Rust crate's fast path (serde's borrowing
// deserialisation) reads this event: known fields present once, as strings
// without escapes.
func fastPathTakes(root any) bool {
	o, ok := root.(*object)
	if !ok || o.badKeys {
		return false
	}
	for _, k := range append(rootStrings, "payload") {
		if o.dups[k] {
			return false
		}
	}
	for _, k := range rootStrings {
		if !clean(o, k, false) {
			return false
		}
	}
	pv, _ := o.get("payload")
	p, ok := pv.(*object)
	if !ok || p.badKeys {
		return false
	}
	for _, k := range append(taskStrings, taskOptional...) {
		if p.dups[k] {
			return false
		}
	}
	for _, k := range taskStrings {
		if !clean(p, k, false) {
			return false
		}
	}
	for _, k := range taskOptional {
		if !clean(p, k, true) {
			return false
		}
	}
	return true
}

// Parse reads the task event in data (JSON bytes).
func Parse(data []byte) (*TaskEvent, error) {
	root, strictProblem, err := parseJSON(data)
	if err != nil {
		return nil, reject("", "invalid JSON: %v", err)
	}
	if strictProblem == "" {
		return checked(root)
	}
	if !fastPathTakes(root) {
		return nil, reject("", "invalid JSON: %s", strictProblem)
	}
	e, err := checked(root)
	if err != nil { // the Rust crate's checked path would refuse the JSON itself
		return nil, reject("", "invalid JSON (and %v)", err)
	}
	return e, nil
}

// Validate returns a *Rejection unless data is a valid task event.
func Validate(data []byte) error {
	_, err := Parse(data)
	return err
}

// AppendJSONString writes s as serde_json writes a string: only `"`, `\` and
// control characters escaped.
func AppendJSONString(out []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c == '\b':
			out = append(out, '\\', 'b')
		case c == '\f':
			out = append(out, '\\', 'f')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

// Package watchframe reads a Kubernetes JSON watch stream cheaply: it splits the stream into
// events and takes an event apart (type and object) by counting brackets outside strings, where
// client-go runs encoding/json's scanner over each event twice before the object is decoded.
package watchframe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The data plane's start-up is mostly reading its initial lists, streamed as watch events, and
// client-go reads each event three times with encoding/json's scanner: to find where the event
// ends (the JSON framer), to take the event apart (type and object) and to decode the object. A
// CPU profile of the in-process start-up benchmark (internal/authz BenchmarkStartupFeed) put the
// first two at half of the data plane's decoding. Framer and ParseEvent do them with a scan that
// only counts brackets outside strings; the object itself is still decoded, and validated, by
// encoding/json, so a stream that is not JSON still fails to decode.

// MaxFrame bounds one watch event, as client-go's streaming decoder bounds its buffer.
const MaxFrame = 16 << 20

// ErrFrameTooLarge is returned for a watch event longer than MaxFrame.
var ErrFrameTooLarge = errors.New("watch stream: an event larger than 16 MiB")

// Framer splits a JSON watch stream into its events: JSON objects one after another, separated by
// optional whitespace (the apiserver writes one per line). It implements runtime.Framer.
type Framer struct{}

// NewFrameReader implements runtime.Framer.
func (Framer) NewFrameReader(r io.ReadCloser) io.ReadCloser {
	return &frameReader{r: r, br: bufio.NewReaderSize(r, 64<<10)}
}

// NewFrameWriter implements runtime.Framer: JSON needs no framing on the way out.
func (Framer) NewFrameWriter(w io.Writer) io.Writer { return w }

// frameReader returns one event per Read, as client-go's streaming decoder expects of a frame
// reader: when the event does not fit, the part that fits and io.ErrShortBuffer, then the rest.
type frameReader struct {
	r         io.ReadCloser
	br        *bufio.Reader
	frame     []byte // the current event, reused for the next
	remaining []byte // what of it Read has not returned yet
}

func (f *frameReader) Read(data []byte) (int, error) {
	if len(f.remaining) == 0 {
		if err := f.next(); err != nil {
			return 0, err
		}
		f.remaining = f.frame
	}
	n := copy(data, f.remaining)
	f.remaining = f.remaining[n:]
	if len(f.remaining) > 0 {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

func (f *frameReader) Close() error { return f.r.Close() }

// next reads the next event into f.frame: from its opening brace to the brace that closes it,
// braces and brackets inside strings not counted.
func (f *frameReader) next() error {
	f.frame = f.frame[:0]
	for { // the whitespace between events
		c, err := f.br.ReadByte()
		if err != nil {
			return err // io.EOF here: the stream ended between events
		}
		if !isSpace(c) {
			_ = f.br.UnreadByte()
			break
		}
	}
	var s frameScan
	for {
		if f.br.Buffered() == 0 {
			if _, err := f.br.Peek(1); err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		chunk, _ := f.br.Peek(f.br.Buffered())
		end, err := s.scan(chunk)
		if err != nil {
			return err
		}
		if end < 0 {
			end = len(chunk)
		}
		f.frame = append(f.frame, chunk[:end]...)
		_, _ = f.br.Discard(end)
		switch {
		case len(f.frame) > MaxFrame:
			return ErrFrameTooLarge
		case s.done:
			return nil
		}
	}
}

// frameScan is the state of scanning one JSON object for its end.
type frameScan struct {
	started, inString, escaped, done bool
	depth                            int
}

// scan reads chunk, the next bytes of an event, and returns the index just past the event's
// closing brace, or -1 when the event goes on past chunk.
func (s *frameScan) scan(chunk []byte) (int, error) {
	for i := 0; i < len(chunk); i++ {
		c := chunk[i]
		switch {
		case !s.started:
			if c != '{' {
				return 0, fmt.Errorf("watch stream: an event starts with %q, not an object", c)
			}
			s.started, s.depth = true, 1
		case s.inString:
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"':
				s.inString = false
			}
		default:
			switch c {
			case '"':
				// Most of an event's bytes are inside strings: jump to the closing quote when
				// no backslash comes before it (both searches vectorised, each byte looked at
				// at most twice); otherwise, or when the string goes on past chunk, go byte by
				// byte.
				if n := plainStringLen(chunk[i+1:]); n >= 0 {
					i += 1 + n
				} else {
					s.inString = true
				}
			case '{', '[':
				s.depth++
			case '}', ']':
				s.depth--
				if s.depth == 0 {
					s.done = true
					return i + 1, nil
				}
			}
		}
	}
	return -1, nil
}

// plainStringLen returns the index of the quote that closes the string whose contents begin
// data, when no backslash comes before it; -1 when data holds no quote or a backslash precedes
// the first.
func plainStringLen(data []byte) int {
	q := bytes.IndexByte(data, '"')
	if q < 0 || bytes.IndexByte(data[:q], '\\') >= 0 {
		return -1
	}
	return q
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// ParseEvent takes a watch event apart — its "type" and the extent of its "object" — by the same
// bracket count; object aliases data. It reports false for anything it does not handle (escapes in
// keys or in the type, a type that is not a string, malformed structure); the caller then decodes
// the event with encoding/json, which says what is wrong.
func ParseEvent(data []byte) (typ string, object []byte, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return "", nil, false
	}
	for i = skipSpace(data, i+1); ; i = skipSpace(data, i+1) {
		if i >= len(data) || data[i] != '"' {
			return "", nil, false
		}
		key, next, ok := plainString(data, i)
		if !ok {
			return "", nil, false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return "", nil, false
		}
		i = skipSpace(data, i+1)
		end, ok := valueEnd(data, i)
		if !ok {
			return "", nil, false
		}
		switch string(key) {
		case "type":
			t, next, ok := plainString(data, i)
			if !ok || next != end {
				return "", nil, false
			}
			typ = string(t)
		case "object":
			object = data[i:end]
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return "", nil, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return "", nil, false
		}
	}
	// A null object is no object to encoding/json (RawExtension keeps no bytes): left to it.
	if skipSpace(data, i+1) != len(data) || typ == "" || object == nil || string(object) == "null" {
		return "", nil, false
	}
	return typ, object, true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// plainString returns the contents of the JSON string starting at data[i] (a quote, aliasing
// data) and the index past it, when it is printable ASCII without escapes (encoding/json rewrites
// invalid UTF-8 and refuses control characters: such strings are left to it).
func plainString(data []byte, i int) ([]byte, int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// valueEnd returns the index just past the JSON value starting at data[i].
func valueEnd(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '{', '[':
		s := frameScan{started: true, depth: 1}
		end, _ := s.scan(data[i+1:])
		if end < 0 {
			return 0, false
		}
		return i + 1 + end, true
	case '"':
		if n := plainStringLen(data[i+1:]); n >= 0 {
			return i + 1 + n + 1, true
		}
		escaped := false
		for j := i + 1; j < len(data); j++ {
			switch {
			case escaped:
				escaped = false
			case data[j] == '\\':
				escaped = true
			case data[j] == '"':
				return j + 1, true
			}
		}
		return 0, false
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j, j > i
		}
		j++
	}
	return j, j > i
}

// CopyWithoutManagedFields returns a copy of object (a watch event's object) without
// metadata.managedFields, by the same bracket count. The data plane never reads managedFields, and
// they are most of a credential's JSON (every writer's field set): decoding them would be most of
// the decoding, and their timestamps and field sets most of its garbage. Anything it does not take
// apart (not an object, escapes in a key, malformed structure) is copied whole, for encoding/json
// to decode or refuse as before.
//
// What is dropped is not validated: an object whose managedFields are not valid JSON decodes
// without them instead of failing. Every other byte reaches encoding/json as it came.
func CopyWithoutManagedFields(object []byte) []byte {
	if out, ok := copyWithout(object, "metadata", "managedFields"); ok {
		return out
	}
	return append([]byte(nil), object...)
}

// copyWithout copies the JSON object data without the members named member of its members named
// parent (each parent that is an object). Whitespace between members is not kept.
func copyWithout(data []byte, parent, member string) ([]byte, bool) {
	out := make([]byte, 0, len(data))
	i := skipSpace(data, 0)
	out, end, ok := appendMembers(out, data, i, func(key, value, out []byte) ([]byte, bool) {
		if string(key) != parent || value[0] != '{' {
			return append(out, value...), true
		}
		out, _, ok := appendMembers(out, value, 0, func(key, value, out []byte) ([]byte, bool) {
			if string(key) == member {
				return nil, true // dropped
			}
			return append(out, value...), true
		})
		return out, ok
	})
	if !ok || skipSpace(data, end) != len(data) {
		return nil, false
	}
	return out, true
}

// appendMembers appends the object at data[i] to out member by member: each member's key as it
// came, then what value returns for its value (nil out drops the member). It returns the index
// past the object.
func appendMembers(out, data []byte, i int, value func(key, raw, out []byte) ([]byte, bool)) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '{' {
		return nil, 0, false
	}
	out = append(out, '{')
	first := true
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return append(out, '}'), i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, 0, false
		}
		key, next, ok := plainString(data, i)
		if !ok {
			return nil, 0, false
		}
		keyRaw := data[i:next]
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return nil, 0, false
		}
		i = skipSpace(data, i+1)
		end, ok := valueEnd(data, i)
		if !ok {
			return nil, 0, false
		}
		mark := len(out)
		if !first {
			out = append(out, ',')
		}
		out = append(append(out, keyRaw...), ':')
		kept, ok := value(key, data[i:end], out)
		switch {
		case !ok:
			return nil, 0, false
		case kept == nil:
			out = out[:mark]
		default:
			out, first = kept, false
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, 0, false
		}
		if data[i] == '}' {
			return append(out, '}'), i + 1, true
		}
		if data[i] != ',' {
			return nil, 0, false
		}
		i = skipSpace(data, i+1)
	}
}

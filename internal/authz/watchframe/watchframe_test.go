package watchframe

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/framer"
	sigsjson "sigs.k8s.io/json"
)

// frames reads every frame of stream through a frame reader, as client-go's streaming decoder
// does (a buffer of size bufSize, grown on io.ErrShortBuffer), until an error.
func frames(r io.ReadCloser, bufSize int) ([]string, error) {
	var out []string
	for {
		buf := make([]byte, bufSize)
		base := 0
		for {
			n, err := r.Read(buf[base:])
			if errors.Is(err, io.ErrShortBuffer) {
				base += n
				buf = append(buf, make([]byte, len(buf))...)
				continue
			}
			if err != nil {
				return out, err
			}
			base += n
			break
		}
		out = append(out, string(buf[:base]))
	}
}

const watchStream = `{"type":"ADDED","object":{"kind":"ApiKey","metadata":{"name":"a"},"spec":{"scopes":["x}]"]}}}
{"type":"MODIFIED","object":{"metadata":{"name":"b\"}{","annotations":{"q":"\\\"{["}}}}
  {
    "type": "DELETED",
    "object": {"metadata": {"name": "c"}, "list": [1, 2.5, true, null, {"k": []}]}
  }{"object":{"metadata":{"name":"d"}},"type":"BOOKMARK","extra":[{}]}` + "\n\n"

// TestWatchFramerMatchesClientGo checks the bracket-counting framer returns the frames client-go's
// JSON framer returns, for compact, pretty-printed and back-to-back events whose strings hold
// braces, brackets, quotes and backslashes, with buffers smaller and larger than a frame, and
// with the stream arriving whole, a byte at a time and in halves (so that strings are cut
// wherever the scan may jump over them).
func TestWatchFramerMatchesClientGo(t *testing.T) {
	g := gomega.NewWithT(t)
	arrivals := map[string]func(io.Reader) io.Reader{
		"whole":        func(r io.Reader) io.Reader { return r },
		"byte by byte": iotest.OneByteReader,
		"in halves":    iotest.HalfReader,
	}
	for _, size := range []int{1, 7, 64, 4096} {
		want, wantErr := frames(framer.NewJSONFramedReader(io.NopCloser(strings.NewReader(watchStream))), size)
		g.Expect(wantErr).To(gomega.Equal(io.EOF))
		g.Expect(want).To(gomega.HaveLen(4))
		for name, arrive := range arrivals {
			got, err := frames(Framer{}.NewFrameReader(io.NopCloser(arrive(strings.NewReader(watchStream)))), size)
			g.Expect(err).To(gomega.Equal(io.EOF), "buffer of %d, %s", size, name)
			g.Expect(got).To(gomega.Equal(want), "buffer of %d, %s", size, name)
		}
	}
}

// TestWatchFramerRefusesWhatIsNotAnEvent: a stream cut inside an event, one that is not an
// object and one longer than the bound each end with an error, never a partial frame.
func TestWatchFramerRefusesWhatIsNotAnEvent(t *testing.T) {
	g := gomega.NewWithT(t)
	read := func(s string) ([]string, error) {
		return frames(Framer{}.NewFrameReader(io.NopCloser(strings.NewReader(s))), 64)
	}
	got, err := read(`{"type":"ADDED"}` + "\n" + `{"type":"ADDED","object":{"a":"}`)
	g.Expect(got).To(gomega.Equal([]string{`{"type":"ADDED"}`}))
	g.Expect(err).To(gomega.MatchError(io.ErrUnexpectedEOF))

	_, err = read(`["not", "an", "event"]`)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("not an object")))

	huge := `{"type":"ADDED","object":{"a":"` + strings.Repeat("x", MaxFrame) + `"}}`
	_, err = read(huge)
	g.Expect(err).To(gomega.MatchError(ErrFrameTooLarge))
}

// TestParseWatchEvent checks the event parser agrees with encoding/json on every event of the
// stream above, and leaves to it what it does not handle.
func TestParseWatchEvent(t *testing.T) {
	g := gomega.NewWithT(t)
	events, err := frames(Framer{}.NewFrameReader(io.NopCloser(strings.NewReader(watchStream))), 4096)
	g.Expect(err).To(gomega.Equal(io.EOF))
	for _, e := range events {
		var want metav1.WatchEvent
		typ, object, ok := ParseEvent([]byte(e))
		g.Expect(ok).To(gomega.BeTrue(), e)
		g.Expect(sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(e), &want)).To(gomega.Succeed())
		g.Expect(typ).To(gomega.Equal(want.Type))
		// RawExtension keeps the object's bytes as they were.
		g.Expect(string(object)).To(gomega.Equal(string(want.Object.Raw)))
	}
	for _, e := range []string{
		`{"type":"ADD\u0045D","object":{}}`, // an escape in the type
		"{\"type\":\"\xad\",\"object\":0}",  // not UTF-8 (encoding/json makes it U+FFFD)
		`{"type":1,"object":{}}`,            // a type that is not a string
		`{"type":"ADDED"}`,                  // no object
		`{"type":"ADDED","object":null}`,    // a null object
		`{"object":{}}`,                     // no type
		`{"type":"ADDED","object":{}} x`,    // trailing bytes
		`{"type":"ADDED" "object":{}}`,      // no comma
		`{"type":"ADDED","object":{"a":1}`,  // unterminated
		`["type","ADDED"]`,
		``,
	} {
		_, _, ok := ParseEvent([]byte(e))
		g.Expect(ok).To(gomega.BeFalse(), e)
	}
}

// FuzzWatchFraming feeds arbitrary streams to the framer and the event parser: no panic, no
// endless loop, and where client-go's framer reads a stream of objects, the same frames; where
// encoding/json decodes an event, the parser finds the same type and object or leaves it to it.
func FuzzWatchFraming(f *testing.F) {
	f.Add([]byte(watchStream))
	f.Add([]byte(`{"type":"ERROR","object":{"kind":"Status","code":410}}`))
	f.Add([]byte(`{"a":"\\"}{"b":"\"}"}`))
	f.Add([]byte(`{"type":"DELETED","object":null,"type":"ADDED"}`))
	f.Add([]byte(`{"type":"ADDED","object":{"metadata":{"name":"k","managedFields":[{"f":"}"}],"uid":"u"},"spec":{}}}`))
	f.Fuzz(func(t *testing.T, stream []byte) {
		want, wantErr := frames(framer.NewJSONFramedReader(io.NopCloser(bytes.NewReader(stream))), 16)
		got, _ := frames(Framer{}.NewFrameReader(io.NopCloser(bytes.NewReader(stream))), 16)
		// The same stream a byte at a time: every string cut where the scan would jump over it.
		if split, _ := frames(Framer{}.NewFrameReader(io.NopCloser(iotest.OneByteReader(bytes.NewReader(stream)))), 16); !reflect.DeepEqual(split, got) {
			t.Fatalf("byte by byte: %q, whole: %q", split, got)
		}
		for i, w := range want {
			if !strings.HasPrefix(w, "{") {
				break // client-go frames any JSON value; watch events are objects
			}
			if i >= len(got) || got[i] != w {
				t.Fatalf("frame %d: got %q, client-go %q", i, got, want)
			}
		}
		_ = wantErr
		for _, frame := range got {
			var decoded metav1.WatchEvent
			typ, object, ok := ParseEvent([]byte(frame))
			if ok {
				sameWithoutManagedFields(t, object)
			}
			if !ok || !json.Valid([]byte(frame)) {
				continue
			}
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(frame), &decoded); err != nil {
				continue
			}
			if typ != decoded.Type || !bytes.Equal(object, decoded.Object.Raw) {
				t.Fatalf("%q: parsed %q %q, encoding/json %q %q", frame, typ, object, decoded.Type, decoded.Object.Raw)
			}
		}
	})
}

// sameWithoutManagedFields fails t unless CopyWithoutManagedFields(object) decodes as object does,
// apart from its metadata's managedFields (which a copy made whole still has), wherever object
// decodes.
func sameWithoutManagedFields(t *testing.T, object []byte) {
	t.Helper()
	var want, got any
	if sigsjson.UnmarshalCaseSensitivePreserveInts(object, &want) != nil {
		return // nothing to agree with: the copy may decode or not
	}
	copied := CopyWithoutManagedFields(object)
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(copied, &got); err != nil {
		t.Fatalf("%q decodes, its copy %q does not: %v", object, copied, err)
	}
	for _, v := range []any{want, got} {
		if m, ok := v.(map[string]any); ok {
			if meta, ok := m["metadata"].(map[string]any); ok {
				delete(meta, "managedFields")
			}
		}
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%q without managedFields is %#v, its copy %q decodes to %#v", object, want, copied, got)
	}
}

func TestCopyWithoutManagedFields(t *testing.T) {
	g := gomega.NewWithT(t)
	mf := `[{"manager":"kubectl","operation":"Update","time":"2026-12-01T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:scopes":{}}}}]`
	cases := map[string]struct{ in, want string }{
		"a credential": {
			`{"apiVersion":"keycap.dev/v1alpha1","kind":"ApiKey","metadata":{"name":"k","namespace":"acme","managedFields":` + mf + `,"uid":"u"},"spec":{"scopes":["a"]},"status":{"digests":["d"]}}`,
			`{"apiVersion":"keycap.dev/v1alpha1","kind":"ApiKey","metadata":{"name":"k","namespace":"acme","uid":"u"},"spec":{"scopes":["a"]},"status":{"digests":["d"]}}`},
		"first member":                 {`{"metadata":{"managedFields":[],"name":"k"}}`, `{"metadata":{"name":"k"}}`},
		"last member":                  {`{"metadata":{"name":"k", "managedFields" : [] }}`, `{"metadata":{"name":"k"}}`},
		"only member":                  {`{"metadata":{"managedFields":null}}`, `{"metadata":{}}`},
		"twice, twice":                 {`{"metadata":{"managedFields":[1],"managedFields":[2]},"metadata":{"name":"k","managedFields":[3]}}`, `{"metadata":{},"metadata":{"name":"k"}}`},
		"elsewhere, kept":              {`{"spec":{"managedFields":[1]},"metadata":{"labels":{"managedFields":"x"}}}`, `{"spec":{"managedFields":[1]},"metadata":{"labels":{"managedFields":"x"}}}`},
		"strings with {":               {`{"metadata":{"name":"}{\"","managedFields":["]\"["]}}`, `{"metadata":{"name":"}{\""}}`},
		"metadata a string":            {`{"metadata":"managedFields"}`, `{"metadata":"managedFields"}`},
		"no object":                    {`[1]`, `[1]`},
		"an escaped key: copied whole": {`{"metadata":{"managed\u0046ields":[]}}`, `{"metadata":{"managed\u0046ields":[]}}`},
		"cut short: copied whole":      {`{"metadata":{"managedFields":[]`, `{"metadata":{"managedFields":[]`},
	}
	for name, c := range cases {
		got := CopyWithoutManagedFields([]byte(c.in))
		g.Expect(string(got)).To(gomega.Equal(c.want), name)
		sameWithoutManagedFields(t, []byte(c.in))
	}
}

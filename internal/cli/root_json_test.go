package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestStdoutOneDocument: whatever a command handed to writeJSON or wrote itself, a --json run ends
// with exactly one document on stdout, and a failing run's document says why.
func TestStdoutOneDocument(t *testing.T) {
	fail := &RunError{Error: "boom", ExitCode: ExitIntegrity, Class: exitClass(ExitIntegrity)}
	cases := []struct {
		name string
		run  func(s *stdout)
		fail *RunError
		want string // the one document, compact
	}{
		{"typed result, success", func(s *stdout) { _ = writeJSON(s, &VerifyMessage{MessageType: msgVerify, OK: true}) }, nil,
			`{"message_type":"verify","ok":true,"result":null}`},
		{"typed result carries the error", func(s *stdout) { _ = writeJSON(s, &VerifyMessage{MessageType: msgVerify}) }, fail,
			`{"message_type":"verify","ok":false,"result":null,"error":"boom","exit_code":6,"class":"integrity"}`},
		{"map result carries the error", func(s *stdout) { _ = writeJSON(s, map[string]any{"message_type": "diff"}) }, fail,
			`{"class":"integrity","error":"boom","exit_code":6,"message_type":"diff"}`},
		{"nothing printed: the error document", func(s *stdout) {}, fail,
			`{"message_type":"error","error":"boom","exit_code":6,"class":"integrity"}`},
		{"an array gives way to the error document", func(s *stdout) { _ = writeJSON(s, []ListEntry{}) }, fail,
			`{"message_type":"error","error":"boom","exit_code":6,"class":"integrity"}`},
		{"written directly: nothing added", func(s *stdout) { _, _ = s.Write([]byte(`{"generated":"x"}` + "\n")) }, fail,
			`{"generated":"x"}`},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		s := &stdout{w: &buf}
		c.run(s)
		if buf.Len() != 0 && !s.direct {
			t.Errorf("%s: printed before the command ended: %s", c.name, buf.String())
		}
		if err := s.finish(true, c.fail); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(&buf)
		var docs []json.RawMessage
		for dec.More() {
			var d json.RawMessage
			if err := dec.Decode(&d); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			docs = append(docs, d)
		}
		if len(docs) != 1 {
			t.Fatalf("%s: %d documents", c.name, len(docs))
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, docs[0])
		if got := strings.TrimSpace(compact.String()); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

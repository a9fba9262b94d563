package cli

import (
	"encoding/json"
	"testing"
)

// TestComponentResultJSON: a component's summary is printed as it is, and a run that fails after the
// component produced it (config --diff: exit 9) keeps it, with the error fields after its own.
func TestComponentResultJSON(t *testing.T) {
	type doc struct {
		MessageType string `json:"message_type"`
		Same        bool   `json:"same"`
	}
	cases := []struct {
		name string
		c    componentResult
		want string
	}{
		{"no error", componentResult{Doc: doc{"diff", true}}, `{"message_type":"diff","same":true}`},
		{"error", componentResult{Doc: doc{"diff", false}, RunError: RunError{Error: "differs", ExitCode: ExitDiffers, Class: "differs"}},
			`{"message_type":"diff","same":false,"error":"differs","exit_code":9,"class":"differs"}`},
		{"empty doc", componentResult{Doc: struct{}{}, RunError: RunError{Error: "x", ExitCode: 1}}, `{"error":"x","exit_code":1}`},
	}
	for _, tc := range cases {
		b, err := json.Marshal(&tc.c)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %s %v, want %s", tc.name, b, err, tc.want)
		}
	}
}

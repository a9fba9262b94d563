package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/report"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
	"github.com/cfbackup/cfbackup/pkg/source/kv"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated part of docs/JSON.md")

// JSONMessage is one kind of --json document: the Go type it is printed from, which commands print
// it and its message_type. Exported (from a test file) for the validation test in package cli_test.
type JSONMessage struct {
	Name        string
	MessageType string // "" when the document has no message_type (arrays, and a few objects)
	Commands    []string
	Array       bool // the document is an array of Type
	Type        reflect.Type
	// About is one line for docs/JSON.md.
	About string
}

// JSONMessages lists every typed --json document. TestMessagesRegistered keeps it complete.
func JSONMessages() []JSONMessage {
	t := func(v any) reflect.Type { return reflect.TypeOf(v) }
	return []JSONMessage{
		{Name: "ErrorMessage", MessageType: msgError, Commands: []string{"any command"}, Type: t(ErrorMessage{}), About: "a run that failed before it had a result to print"},
		{Name: "KeyGenerateMessage", Commands: []string{"key generate"}, Type: t(KeyGenerateMessage{}), About: "the new identity's file and recipient"},
		{Name: "KeyListMessage", MessageType: msgKeyList, Commands: []string{"key list"}, Type: t(KeyListMessage{}), About: "recipients, the writer key id, unfinished rotations"},
		{Name: "KeyRecipientsMessage", MessageType: msgKeyRecipients, Commands: []string{"key add-recipient", "key remove-recipient"}, Type: t(KeyRecipientsMessage{}), About: "the recipient added or removed, the new set, and what --rewrap did"},
		{Name: "KeyRewrapMessage", MessageType: msgKeyRewrap, Commands: []string{"key rewrap"}, Type: t(KeyRewrapMessage{}), About: "objects rewrapped, bytes read and written, Object Lock skips"},
		{Name: "KeyRotateWriterMessage", MessageType: msgKeyRotateWriter, Commands: []string{"key rotate-writer"}, Type: t(KeyRotateWriterMessage{}), About: "the new writer key id (the secret is never printed)"},
		{Name: "InitMessage", Commands: []string{"init"}, Type: t(InitMessage{}), About: "the new repository"},
		{Name: "ListEntry", Commands: []string{"list"}, Array: true, Type: t(ListEntry{}), About: "snapshots, newest first"},
		{Name: "VerifyMessage", MessageType: msgVerify, Commands: []string{"verify"}, Type: t(VerifyMessage{}), About: "one snapshot's verification"},
		{Name: "VerifyAllMessage", MessageType: msgVerifyAll, Commands: []string{"verify --all"}, Type: t(VerifyAllMessage{}), About: "every snapshot verified, each segment once, or one slice of them"},
		{Name: "StatsMessage", MessageType: msgStats, Commands: []string{"stats"}, Type: t(StatsMessage{}), About: "the repository's storage figures"},
		{Name: "PruneMessage", MessageType: msgPrune, Commands: []string{"prune"}, Type: t(PruneMessage{}), About: "the prune plan and outcome (the prune record)"},
		{Name: "PruneTierMessage", MessageType: msgPruneTier, Commands: []string{"prune --tier"}, Type: t(PruneTierMessage{}), About: "segments moved to a storage class, by class (docs/STORAGE_CLASSES.md)"},
		{Name: "HoldMessage", MessageType: msgHold, Commands: []string{"hold add", "hold release"}, Type: t(HoldMessage{}), About: "a hold placed or released"},
		{Name: "Hold", Commands: []string{"hold list"}, Array: true, Type: t(engine.Hold{}), About: "holds, oldest first"},
		{Name: "CopyPlanMessage", MessageType: msgPlan, Commands: []string{"copy --dry-run"}, Type: t(CopyPlanMessage{}), About: "what copy would copy"},
		{Name: "CopySummaryMessage", MessageType: msgSummary, Commands: []string{"copy"}, Type: t(CopySummaryMessage{}), About: "what copy copied"},
		{Name: "AuditVerifyMessage", MessageType: msgAuditVerify, Commands: []string{"audit verify"}, Type: t(AuditVerifyMessage{}), About: "the audit chain's status"},
		{Name: "AuditRecord", Commands: []string{"audit list"}, Array: true, Type: t(audit.Record{}), About: "audit records as stored, oldest first"},
		{Name: "Report", Commands: []string{"report --json", "report --format json"}, Type: t(report.Report{}), About: "the compliance report"},
		{Name: "UnlockMessage", MessageType: msgSummary, Commands: []string{"unlock"}, Type: t(UnlockMessage{}), About: "every lock seen and what became of it"},
		{Name: "MigrateMessage", MessageType: msgSummary, Commands: []string{"migrate"}, Type: t(MigrateMessage{}), About: "the format upgrade"},
		{Name: "BackupPlanMessage", MessageType: msgPlan, Commands: []string{"backup --dry-run"}, Type: t(BackupPlanMessage{}), About: "what each component would capture"},
		{Name: "BackupSummaryMessage", MessageType: msgSummary, Commands: []string{"backup"}, Type: t(BackupSummaryMessage{}), About: "the snapshot saved and its copies"},
		{Name: "ShardBackupMessage", MessageType: msgShard, Commands: []string{"backup --shard I/N"}, Type: t(ShardBackupMessage{}), About: "one shard's partial, and the merge when it completed the run (docs/SHARDING.md)"},
		{Name: "ShardMergeMessage", MessageType: msgShardMerge, Commands: []string{"shard merge"}, Type: t(ShardMergeMessage{}), About: "the sharded run's one snapshot"},
		{Name: "TestRestoreMessage", MessageType: "test_restore", Commands: []string{"test-restore"}, Type: t(TestRestoreMessage{}), About: "every source's checks and problems"},
		{Name: "PointInTimePlanMessage", MessageType: msgPlan, Commands: []string{"restore --at T --dry-run"}, Type: t(PointInTimePlanMessage{}), About: "the snapshot each component would be restored from"},
		{Name: "RestorePlanMessage", MessageType: msgPlan, Commands: []string{"restore --dry-run (every component)"}, Type: t(restorePlanMessage{}), About: "the component's restore plan under \"plan\" (its type below: d1.RestorePlanJSON, d1.RewindPlanJSON, r2.RestorePlanJSON, durableobject.RestorePlanJSON, config.RestorePlanJSON, kv.RestorePlanJSON)"},
		{Name: "d1.FileSummary", MessageType: msgSummary, Commands: []string{"restore --component d1 --to-file"}, Type: t(d1.FileSummary{}), About: "a D1 database restored into a local SQLite file"},
		{Name: "d1.DatabaseSummary", MessageType: msgSummary, Commands: []string{"restore --component d1 --to-database / --in-place"}, Type: t(d1.DatabaseSummary{}), About: "a D1 database restored through the import API"},
		{Name: "d1.RewindSummary", MessageType: msgSummary, Commands: []string{"restore --component d1 --at T --time-travel --in-place"}, Type: t(d1.RewindSummary{}), About: "a D1 database rewound with Time Travel"},
		{Name: "r2.RestoreSummary", MessageType: msgSummary, Commands: []string{"restore --component r2"}, Type: t(r2.RestoreSummary{}), About: "R2 objects restored"},
		{Name: "durableobject.RestoreSummary", MessageType: msgSummary, Commands: []string{"restore --component do"}, Type: t(durableobject.RestoreSummary{}), About: "Durable Objects restored"},
		{Name: "config.RestoreSummary", MessageType: msgSummary, Commands: []string{"restore --component config --to-dir"}, Type: t(configsrc.RestoreSummary{}), About: "the Workers configuration written as files"},
		{Name: "config.DiffMessage", MessageType: "diff", Commands: []string{"restore --component config --diff"}, Type: t(configsrc.DiffMessage{}), About: "the snapshot's configuration against the live account"},
		{Name: "DoctorMessage", MessageType: msgDoctor, Commands: []string{"doctor"}, Type: t(DoctorMessage{}), About: "every check made, its status and fix"},
		{Name: "kv.RestoreSummary", MessageType: msgSummary, Commands: []string{"restore --component kv"}, Type: t(kv.RestoreSummary{}), About: "KV pairs restored"},
		{Name: "VersionMessage", MessageType: msgVersion, Commands: []string{"version"}, Type: t(VersionMessage{}), About: "which build is running"},
		{Name: "PlanWrittenMessage", MessageType: msgPlanWritten, Commands: []string{"restore (protected target)"}, Type: t(PlanWrittenMessage{}), About: "the restore plan written for approval (exit 12)"},
		{Name: "PlansMessage", MessageType: msgPlans, Commands: []string{"plans list"}, Type: t(PlansMessage{}), About: "restore plans and their state"},
		{Name: "PlanShowMessage", MessageType: msgPlanShow, Commands: []string{"plans show"}, Type: t(PlanShowMessage{}), About: "one plan and its approvals as this host judges them"},
		{Name: "ApprovalMessage", MessageType: msgApproval, Commands: []string{"approve"}, Type: t(ApprovalMessage{}), About: "the approval written"},
		{Name: "ApproversMessage", MessageType: msgApprovers, Commands: []string{"approvers list"}, Type: t(ApproversMessage{}), About: "registered approvers and whether this host trusts each"},
		{Name: "ApproverAddedMessage", MessageType: msgApproverAdded, Commands: []string{"approvers add"}, Type: t(ApproverAddedMessage{}), About: "the approver registered"},
		{Name: "SigningKeyMessage", MessageType: msgSigningKey, Commands: []string{"approvers keygen"}, Type: t(SigningKeyMessage{}), About: "the new signing key's file and public key"},
	}
}

// JSONSchemaOf is m's JSON Schema (draft 2020-12, the subset ValidateJSON checks).
func JSONSchemaOf(m JSONMessage) map[string]any {
	s := schemaOf(m.Type, map[reflect.Type]bool{})
	if m.MessageType != "" {
		s["properties"].(map[string]any)["message_type"] = map[string]any{"const": m.MessageType}
	}
	if m.Array {
		s = map[string]any{"type": "array", "items": s}
	}
	s["title"] = m.Name
	return s
}

var (
	timeType      = reflect.TypeOf(time.Time{})
	marshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
)

// schemaOf describes how encoding/json encodes values of type t. Pointers, slices and maps may be
// null (encoding/json writes a nil one so); struct fields without omitempty are required; a struct
// allows no other property.
func schemaOf(t reflect.Type, seen map[reflect.Type]bool) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() != reflect.Pointer && t.Implements(marshalerType):
		// A custom encoding: its zero value says which JSON type it is.
		b, err := reflect.Zero(t).Interface().(json.Marshaler).MarshalJSON()
		if err == nil && len(b) > 0 {
			switch b[0] {
			case '"':
				return map[string]any{"type": "string"}
			case '{':
				return map[string]any{"type": "object"}
			case '[':
				return map[string]any{"type": "array"}
			case 't', 'f':
				return map[string]any{"type": "boolean"}
			}
		}
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := schemaOf(t.Elem(), seen)
		return nullable(s)
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string"} // base64
		}
		s := map[string]any{"type": "array", "items": schemaOf(t.Elem(), seen)}
		if t.Kind() == reflect.Slice {
			return nullable(s)
		}
		return s
	case reflect.Map:
		return nullable(map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), seen)})
	case reflect.Struct:
		if seen[t] {
			return map[string]any{} // a recursive type: not described further
		}
		seen[t] = true
		defer delete(seen, t)
		props, required := map[string]any{}, []string{}
		structFields(t, seen, props, &required)
		sort.Strings(required)
		return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
	}
	panic(fmt.Sprintf("schemaOf: %v is not encoded by the --json documents", t))
}

func structFields(t reflect.Type, seen map[reflect.Type]bool, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				structFields(ft, seen, props, required)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := schemaOf(ft, seen)
		if strings.Contains(","+opts+",", ",string,") {
			s = map[string]any{"type": "string"}
		}
		props[name] = s
		if !strings.Contains(","+opts+",", ",omitempty,") {
			*required = append(*required, name)
		}
	}
}

func nullable(s map[string]any) map[string]any {
	switch ty := s["type"].(type) {
	case string:
		s["type"] = []any{ty, "null"}
	case []any:
		s["type"] = append(ty, "null")
	}
	return s
}

// ValidateJSON checks one document against a schema made by JSONSchemaOf: type (integer meaning a
// number without fraction or exponent), const, format date-time, properties, required,
// additionalProperties and items. It returns every mismatch, by JSON path.
func ValidateJSON(schema map[string]any, doc []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	if dec.More() {
		return []string{"more than one JSON document"}
	}
	var probs []string
	validate(schema, v, "$", &probs)
	return probs
}

func validate(s map[string]any, v any, path string, probs *[]string) {
	bad := func(format string, args ...any) { *probs = append(*probs, path+": "+fmt.Sprintf(format, args...)) }
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, v) {
		bad("is %v, want %v", v, c)
		return
	}
	if ty, ok := s["type"]; ok {
		var types []string
		switch x := ty.(type) {
		case string:
			types = []string{x}
		case []any:
			for _, e := range x {
				types = append(types, e.(string))
			}
		}
		got := jsonType(v)
		okType := false
		for _, want := range types {
			if want == got || (want == "number" && got == "integer") {
				okType = true
			}
		}
		if !okType {
			bad("is %s, want %s", got, strings.Join(types, " or "))
			return
		}
	}
	switch x := v.(type) {
	case string:
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				bad("not a date-time: %q", x)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				validate(items, e, fmt.Sprintf("%s[%d]", path, i), probs)
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := x[r]; !ok {
				bad("lacks required %q", r)
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				validate(ps, x[k], path+"."+k, probs)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					bad("has unexpected property %q", k)
				}
			case map[string]any:
				validate(ap, x[k], path+"."+k, probs)
			}
		}
	}
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, e.(string))
		}
		return out
	}
	return nil
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "number"
		}
		return "integer"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

const (
	docPath   = "../../docs/JSON.md"
	beginMark = "<!-- BEGIN GENERATED by TestJSONSchemas (go test ./internal/cli -run TestJSONSchemas -update); do not edit -->"
	endMark   = "<!-- END GENERATED -->"
)

// generatedDoc is the generated part of docs/JSON.md: the table of messages, then each schema.
func generatedDoc() string {
	var b strings.Builder
	b.WriteString("| document | message_type | printed by | what |\n|---|---|---|---|\n")
	ms := JSONMessages()
	for _, m := range ms {
		mt := "—"
		if m.MessageType != "" {
			mt = "`" + m.MessageType + "`"
		}
		name := "`" + m.Name + "`"
		if m.Array {
			name = "array of " + name
		}
		cmds := make([]string, len(m.Commands))
		for i, c := range m.Commands {
			cmds[i] = "`cfbackup " + c + "`"
			if c == "any command" {
				cmds[i] = c
			}
		}
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s | %s |\n", name, strings.ToLower(m.Name), mt, strings.Join(cmds, ", "), m.About)
	}
	for _, m := range ms {
		sch, err := json.MarshalIndent(JSONSchemaOf(m), "", "  ")
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "\n### %s\nGo type `%s`.\n\n```json\n%s\n```\n", m.Name, m.Type.String(), sch)
	}
	return b.String()
}

// TestJSONSchemas keeps docs/JSON.md's schemas those of the Go types: -update rewrites them, and
// without it the test fails when a message type changed and the doc did not.
func TestJSONSchemas(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q … %q", docPath, beginMark, endMark)
	}
	want := doc[:i+len(beginMark)] + "\n" + generatedDoc() + doc[j:]
	if want == doc {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is stale: run go test ./internal/cli -run TestJSONSchemas -update", docPath)
}

// TestMessagesRegistered: every document type declared in messages.go is in JSONMessages, so none
// goes undocumented.
func TestMessagesRegistered(t *testing.T) {
	fs := token.NewFileSet()
	f, err := parser.ParseFile(fs, "messages.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, m := range JSONMessages() {
		registered[m.Type.Name()] = true
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.TYPE {
			continue
		}
		for _, sp := range g.Specs {
			name := sp.(*ast.TypeSpec).Name.Name
			if strings.HasSuffix(name, "Message") && !registered[name] {
				t.Errorf("%s (messages.go) is not in JSONMessages: it would be missing from docs/JSON.md", name)
			}
		}
	}
}

// TestValidatorRejects: the validator finds what a stale schema would let through.
func TestValidatorRejects(t *testing.T) {
	var verify JSONMessage
	for _, m := range JSONMessages() {
		if m.Name == "VerifyMessage" {
			verify = m
		}
	}
	s := JSONSchemaOf(verify)
	good := `{"message_type":"verify","ok":true,"result":{"time":"2026-12-03T10:00:00Z","ok":true,"snapshot":"ab","mode":"quick","segments_checked":1,"segments_total":1,"items_checked":0,"bytes_read":5,"problems":[],"duration_ms":1}}`
	if p := ValidateJSON(s, []byte(good)); len(p) != 0 {
		t.Fatalf("a valid document is refused: %v", p)
	}
	for name, c := range map[string]struct{ doc, want string }{
		"wrong message_type": {strings.Replace(good, `"verify"`, `"prune"`, 1), "$.message_type: is prune, want verify"},
		"unknown field":      {strings.Replace(good, `"ok":true,`, `"ok":true,"extra":1,`, 1), `$: has unexpected property "extra"`},
		"missing field":      {strings.Replace(good, `"mode":"quick",`, ``, 1), `$.result: lacks required "mode"`},
		"string for integer": {strings.Replace(good, `"bytes_read":5`, `"bytes_read":"5"`, 1), "$.result.bytes_read: is string, want integer"},
		"fraction":           {strings.Replace(good, `"bytes_read":5`, `"bytes_read":5.5`, 1), "$.result.bytes_read: is number, want integer"},
		"bad time":           {strings.Replace(good, `2026-12-03T10:00:00Z`, `yesterday`, 1), `$.result.time: not a date-time: "yesterday"`},
		"array item":         {strings.Replace(good, `"problems":[]`, `"problems":[1]`, 1), "$.result.problems[0]: is integer, want string"},
		"two documents":      {good + "\n" + good, "more than one JSON document"},
	} {
		p := ValidateJSON(s, []byte(c.doc))
		if len(p) != 1 || p[0] != c.want {
			t.Errorf("%s: got %q, want %q", name, p, c.want)
		}
	}
}

// Package audit keeps the repository's tamper-evident audit trail: one immutable JSON object per event
// under audit/, each carrying the SHA-256 of the previous record, so a deleted, edited or reordered
// record breaks the chain and Verify names it (invariant 7, docs/ARCHITECTURE.md).
//
// Records are stored as audit/<seq, 12 digits>-<hash>.json, where hash is the SHA-256 (hex) of the
// record's canonical JSON without its own "hash" field (see Canonical). Because two writers racing for
// the same sequence number would produce different keys, a writer first claims the number with a
// conditional create of audit/<seq>.seq holding the record's hash; the loser lists again and takes the
// next number. A claim without its record is reported by Verify (a crash between the two writes, or a
// deleted record).
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	jsonseal "github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Prefix is where audit records live in the repository.
const Prefix = layout.Audit

// Result values. A mutating command writes a "started" record before it runs and an "ok" or "error"
// record (same Run id) when it ends, so a run killed in between still leaves evidence.
const (
	ResultStarted = "started"
	ResultOK      = "ok"
	ResultError   = "error"
)

// What a run read (Record.Reads): who decrypted what, and when, is evidence too.
const (
	ReadsData       = "data"
	ReadsCiphertext = "ciphertext"
	ReadsMetadata   = "metadata"
)

// Record is one audit event. Plaintext: it never holds item, table or object names, nor secrets.
type Record struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Host     string    `json:"host"`
	Command  string    `json:"command"`
	Args     []string  `json:"args"`
	Result   string    `json:"result"`
	Error    string    `json:"error"`
	ExitCode int       `json:"exit_code"`
	// Snapshots are the snapshot ids the run created, read, held or removed.
	Snapshots []string `json:"snapshots"`
	// Components the run concerned (d1, do, r2, config), when known.
	Components []string `json:"components,omitempty"`
	// Reads says the run read stored data, for commands that do without changing anything an auditor
	// would otherwise see: ReadsData (decrypted: restore, test-restore, verify --read-data*),
	// ReadsCiphertext (copied still encrypted: copy) or ReadsMetadata (report). Empty for other runs.
	Reads string `json:"reads,omitempty"`
	// Bytes is how much the run read or wrote, when it says (restore: plaintext bytes decrypted;
	// backup: the snapshot's bytes before compression).
	Bytes int64 `json:"bytes,omitempty"`
	// Items, StoredBytes and PerComponent say what a run that wrote a snapshot (backup, a shard of a
	// sharded run, shard merge) put in it: its items (D1 tables, R2 objects, Durable Objects, KV
	// keys, configuration documents), the bytes the run stored (ciphertext of the segments it wrote,
	// against Bytes before compression; 0 when every item was reused from the parent), and items and
	// bytes per component. Absent from other records, and from records written before they existed.
	Items        int64            `json:"items,omitempty"`
	StoredBytes  int64            `json:"stored_bytes,omitempty"`
	PerComponent map[string]Count `json:"per_component,omitempty"`
	// Run ties a "started" record to its "ok"/"error" record.
	Run  string `json:"run,omitempty"`
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Count is one component's share of what a run wrote (Record.PerComponent): items and their bytes
// before compression.
type Count struct {
	Items int64 `json:"items"`
	Bytes int64 `json:"bytes"`
}

// ErrChain: the audit chain is broken (a record is missing, edited, reordered or forked).
var ErrChain = errors.New("audit chain broken")

// Canonical is the byte string a record's hash is taken over: the record as a JSON object without its
// "hash" member, keys sorted by byte order at every level, no insignificant whitespace, and <, > and &
// not escaped. It works on the stored bytes, so fields a newer version adds are covered too.
func Canonical(raw []byte) ([]byte, error) { return jsonseal.Canonical(raw, "hash") }

// HashOf computes a record's hash from its JSON encoding (with or without its "hash" member).
func HashOf(raw []byte) (string, error) {
	c, err := Canonical(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// seal fills r.Hash and returns the bytes to store.
func seal(r *Record) ([]byte, error) {
	r.Hash = ""
	if r.Args == nil {
		r.Args = []string{}
	}
	if r.Snapshots == nil {
		r.Snapshots = []string{}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	h, err := HashOf(raw)
	if err != nil {
		return nil, err
	}
	r.Hash = h
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// RecordKey is the object key of a record.
func RecordKey(seq int64, hash string) string {
	return layout.AuditRecordKey(seq, hash)
}

// ClaimKey is the object key that reserves a sequence number.
func ClaimKey(seq int64) string { return layout.AuditClaimKey(seq) }

// entry is one parsed key under audit/.
type entry struct {
	seq   int64
	hash  string // "" for a claim
	key   string
	claim bool
}

func parseKey(key string) (entry, bool) {
	name := strings.TrimPrefix(key, Prefix)
	if len(name) < 13 {
		return entry{}, false
	}
	seq, err := strconv.ParseInt(name[:12], 10, 64)
	if err != nil || seq < 1 {
		return entry{}, false
	}
	rest := name[12:]
	switch {
	case rest == ".seq":
		return entry{seq: seq, key: key, claim: true}, true
	case strings.HasPrefix(rest, "-") && strings.HasSuffix(rest, layout.JSONSuffix):
		h := strings.TrimSuffix(rest[1:], layout.JSONSuffix)
		if len(h) != 64 {
			return entry{}, false
		}
		return entry{seq: seq, hash: h, key: key}, true
	}
	return entry{}, false
}

// Log appends to and reads one repository's audit trail.
type Log struct {
	Store store.Store
	// Now is the clock (tests inject one); default time.Now.
	Now func() time.Time
	// Attempts bounds the retries when another writer takes the same sequence number (default 20).
	Attempts int
}

func (l *Log) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

// scan lists audit/ and returns records and claims by sequence number.
func (l *Log) scan(ctx context.Context) (records map[int64][]entry, claims map[int64]entry, unknown []string, err error) {
	records = map[int64][]entry{}
	claims = map[int64]entry{}
	err = l.Store.List(ctx, Prefix, func(oi store.ObjectInfo) error {
		e, ok := parseKey(oi.Key)
		switch {
		case !ok:
			unknown = append(unknown, oi.Key)
		case e.claim:
			claims[e.seq] = e
		default:
			records[e.seq] = append(records[e.seq], e)
		}
		return nil
	})
	return records, claims, unknown, err
}

// head returns the highest sequence number seen (record or claim) and the hash of the record at it.
func (l *Log) head(ctx context.Context) (int64, string, error) {
	records, claims, _, err := l.scan(ctx)
	if err != nil {
		return 0, "", err
	}
	var top int64
	for s := range records {
		top = max(top, s)
	}
	for s := range claims {
		top = max(top, s)
	}
	h := ""
	if rs := records[top]; len(rs) > 0 {
		h = rs[0].hash
	}
	return top, h, nil
}

// Append stores r as the next record: it sets Seq, Time (if zero), Prev and Hash, claims the sequence
// number with a conditional create and writes the record with a conditional create. When another writer
// wins the number, it lists again and retries. A claimed number whose record is missing (a crash) is
// skipped: the chain then names the gap, and the next record points at the last record that exists.
func (l *Log) Append(ctx context.Context, r *Record) error {
	attempts := l.Attempts
	if attempts <= 0 {
		attempts = 20
	}
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	r.Time = r.Time.UTC()
	var lastErr error
	for range attempts {
		top, prevHash, err := l.head(ctx)
		if err != nil {
			return fmt.Errorf("audit: list %s: %w", Prefix, err)
		}
		if prevHash == "" && top > 0 {
			// The top number is claimed but its record is not there yet: its writer is between its two
			// writes (or crashed there). The claim names the hash that record has, so chain onto it.
			prevHash, err = l.claimedHash(ctx, top)
			if err != nil {
				return err
			}
		}
		r.Seq = top + 1
		r.Prev = prevHash
		data, err := seal(r)
		if err != nil {
			return err
		}
		err = l.Store.Put(ctx, ClaimKey(r.Seq), strings.NewReader(r.Hash+"\n"), store.PutOptions{IfNotExists: true})
		if errors.Is(err, store.ErrExists) {
			lastErr = err
			continue
		}
		if err != nil {
			return fmt.Errorf("audit: claim record %d: %w", r.Seq, err)
		}
		if err := l.Store.Put(ctx, RecordKey(r.Seq, r.Hash), bytes.NewReader(data), store.PutOptions{IfNotExists: true}); err != nil {
			return fmt.Errorf("audit: write record %d: %w", r.Seq, err)
		}
		return nil
	}
	return fmt.Errorf("audit: %d writers raced for the next sequence number; giving up: %w", attempts, lastErr)
}

// claimedHash reads the hash a claim announces for its record.
func (l *Log) claimedHash(ctx context.Context, seq int64) (string, error) {
	rc, err := l.Store.Open(ctx, ClaimKey(seq), 0, -1)
	if err != nil {
		return "", fmt.Errorf("audit: read claim %d: %w", seq, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1024))
	if err != nil {
		return "", fmt.Errorf("audit: read claim %d: %w", seq, err)
	}
	h := strings.TrimSpace(string(b))
	if len(h) != 64 {
		return "", fmt.Errorf("audit: claim %s does not hold a record hash", ClaimKey(seq))
	}
	return h, nil
}

// Problem is one break in the chain.
type Problem struct {
	Seq     int64  `json:"seq"`
	Key     string `json:"key,omitempty"`
	Problem string `json:"problem"`
}

// Status is the outcome of Verify.
type Status struct {
	OK       bool      `json:"ok"`
	Records  int       `json:"records"`
	HeadSeq  int64     `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	Problems []Problem `json:"problems"`
	// Gaps: the head's sequence number is claimed but its record is not written yet (a writer is
	// between its two writes, or crashed there). They do not make OK false.
	Gaps []Problem `json:"gaps"`
	// Unfinished lists "started" records with no "ok"/"error" record of the same run: a run that crashed
	// (or is still running).
	Unfinished []Record `json:"unfinished"`
}

// Verify reads the whole trail and checks it: every sequence number from 1 to the head has exactly one
// record, each record's body hashes to the hash in its key and its "hash" field, its "seq" matches its
// key, and its "prev" is the previous record's hash. It returns the records in order (those it could
// read) and the status; err is only for storage failures. It holds every record in memory: a reader
// of a long trail that needs each record once (the report) uses Walk instead.
func (l *Log) Verify(ctx context.Context) ([]Record, Status, error) {
	var out []Record
	st, err := l.Walk(ctx, func(r Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	return out, st, nil
}

// Walk checks the trail exactly as Verify does, but hands each readable record to fn in sequence
// order instead of keeping it, so memory stays bounded by the object listing (one key per record) and
// the runs still open, not by the records' contents. An error from fn stops the walk and is returned.
func (l *Log) Walk(ctx context.Context, fn func(Record) error) (Status, error) {
	st := Status{Problems: []Problem{}, Gaps: []Problem{}, Unfinished: []Record{}}
	records, claims, unknown, err := l.scan(ctx)
	if err != nil {
		return st, err
	}
	for _, k := range unknown {
		st.Problems = append(st.Problems, Problem{Key: k, Problem: "unexpected object in audit/ (not a record or a claim)"})
	}
	var top int64
	for s := range records {
		top = max(top, s)
	}
	for s := range claims {
		top = max(top, s)
	}
	open := map[string]Record{} // "started" records whose run has not recorded its end yet, by run
	var unnamed []Record        // "started" records without a run id: never matched by an end
	lastHash := ""              // hash of the newest record that exists before seq
	for seq := int64(1); seq <= top; seq++ {
		es := records[seq]
		if len(es) == 0 {
			if _, ok := claims[seq]; ok {
				// A writer claimed the number and has not written the record: at the head it is most
				// likely writing it now; inside the chain it crashed between its two writes — or the
				// record was deleted later. The chain can't tell those apart, so only the head is a gap.
				if h, err := l.claimedHash(ctx, seq); err == nil {
					lastHash = h
				}
				p := Problem{Seq: seq, Key: ClaimKey(seq)}
				if seq == top {
					p.Problem = "sequence number claimed but its record is not written yet (a run is recording now, or crashed while recording)"
					st.Gaps = append(st.Gaps, p)
				} else {
					p.Problem = "record missing: its sequence number was claimed but the record is not there (deleted, or a run crashed between claiming and writing)"
					st.Problems = append(st.Problems, p)
				}
			} else {
				st.Problems = append(st.Problems, Problem{Seq: seq, Problem: "record missing: no record and no claim for this sequence number (deleted?)"})
			}
			continue
		}
		if len(es) > 1 {
			keys := make([]string, len(es))
			for i, e := range es {
				keys[i] = e.key
			}
			sort.Strings(keys)
			st.Problems = append(st.Problems, Problem{Seq: seq, Problem: "fork: several records share this sequence number: " + strings.Join(keys, ", ")})
		}
		e := es[0]
		rec, raw, err := l.read(ctx, e.key)
		if err != nil && raw == nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.Problems = append(st.Problems, Problem{Seq: seq, Key: e.key, Problem: "unreadable: " + err.Error()})
			lastHash = e.hash
			continue
		}
		h, herr := HashOf(raw)
		switch {
		case err != nil || herr != nil:
			st.Problems = append(st.Problems, Problem{Seq: seq, Key: e.key, Problem: "edited: not a valid record any more"})
		case h != e.hash || rec.Hash != e.hash:
			st.Problems = append(st.Problems, Problem{Seq: seq, Key: e.key, Problem: "edited: the record's content does not match the hash in its name"})
		case rec.Seq != seq:
			st.Problems = append(st.Problems, Problem{Seq: seq, Key: e.key, Problem: fmt.Sprintf("reordered: the record says seq %d but is stored as %d", rec.Seq, seq)})
		case rec.Prev != lastHash:
			st.Problems = append(st.Problems, Problem{Seq: seq, Key: e.key, Problem: "chain broken: prev is not the hash of the record before it (a record was deleted, replaced or moved)"})
		}
		if err == nil {
			st.Records++
			switch {
			case rec.Result == ResultStarted && rec.Run == "":
				unnamed = append(unnamed, rec)
			case rec.Result == ResultStarted:
				open[rec.Run] = rec
			case rec.Run != "":
				delete(open, rec.Run)
			}
			if ferr := fn(rec); ferr != nil {
				return st, ferr
			}
		}
		lastHash = e.hash
	}
	st.HeadSeq = top
	if rs := records[top]; len(rs) > 0 {
		st.HeadHash = rs[0].hash
	}
	st.OK = len(st.Problems) == 0
	for _, r := range open {
		unnamed = append(unnamed, r)
	}
	sort.Slice(unnamed, func(i, j int) bool { return unnamed[i].Seq < unnamed[j].Seq })
	st.Unfinished = append(st.Unfinished, unnamed...)
	return st, nil
}

// Unfinished returns the "started" records that have no "ok"/"error" record of the same run.
func Unfinished(recs []Record) []Record {
	done := map[string]bool{}
	for _, r := range recs {
		if r.Run != "" && r.Result != ResultStarted {
			done[r.Run] = true
		}
	}
	out := []Record{}
	for _, r := range recs {
		if r.Result == ResultStarted && !done[r.Run] {
			out = append(out, r)
		}
	}
	return out
}

func (l *Log) read(ctx context.Context, key string) (Record, []byte, error) {
	rc, err := l.Store.Open(ctx, key, 0, -1)
	if err != nil {
		return Record{}, nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Record{}, nil, err
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return Record{}, raw, err
	}
	return r, raw, nil
}

// Actor names who runs cfbackup: CFBACKUP_ACTOR, else user@host.
func Actor(getenv func(string) string) string {
	if getenv != nil {
		if a := getenv("CFBACKUP_ACTOR"); a != "" {
			return a
		}
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + Host()
}

// Host is this machine's host name.
func Host() string {
	h, _ := os.Hostname()
	return h
}

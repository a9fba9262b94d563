package cloudflare

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cloudflare/cloudflare-go/v7/kv"
	"github.com/cloudflare/cloudflare-go/v7/option"
)

// Workers KV over REST (docs/KV.md lists the API's shapes and limits this file relies on).

// KV limits as Cloudflare documents them (docs/KV.md "Limits").
const (
	KVMaxKeyBytes      = 512
	KVMaxValueBytes    = 25 << 20
	KVMaxMetadataBytes = 1024
	// KVListLimit is the most keys one listing page returns (the API takes 10..1000).
	KVListLimit = 1000
	// KVBulkGetKeys is the most keys one bulk read takes.
	KVBulkGetKeys = 100
	// KVBulkPutPairs and KVBulkPutBytes bound one bulk write (pairs, request body bytes).
	KVBulkPutPairs = 10000
	KVBulkPutBytes = 100_000_000
	// KVMinExpiryAhead is how far in the future an expiration must be for a write to accept it.
	KVMinExpiryAhead = 60
)

// KVBulkGetMaxResponse bounds the body of one bulk read held in memory (invariant 8): a larger answer
// is abandoned and its keys are read one by one, streamed.
var KVBulkGetMaxResponse int64 = 32 << 20

var (
	// ErrKVTooLarge: a bulk read's answer was larger than KVBulkGetMaxResponse.
	ErrKVTooLarge = errclass.New(errclass.Remote, "KV bulk read answer too large")
	// ErrKVPartial: a bulk write or delete left keys unwritten after retries.
	ErrKVPartial = errclass.New(errclass.Remote, "KV bulk write incomplete")
)

// KVNamespace is one Workers KV namespace.
type KVNamespace struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// SupportsURLEncoding: keys in request paths are percent-decoded (newer namespaces). cfbackup
	// addresses single keys in paths only when this is true or the key needs no escaping.
	SupportsURLEncoding bool `json:"supports_url_encoding"`
}

// KVKey is one key of a listing: its name, expiration (Unix seconds, 0 = none) and metadata (raw
// JSON, nil = none).
type KVKey struct {
	Name       string          `json:"name"`
	Expiration int64           `json:"expiration,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// KVBulkValue is one answer of a bulk read: the value as text, with the metadata and expiration
// stored with it. Found is false for a key that does not exist (any more).
type KVBulkValue struct {
	Found      bool
	Value      string
	Metadata   json.RawMessage
	Expiration int64
}

// KVWrite is one pair of a bulk write. Values that are not valid UTF-8 are sent base64-encoded.
type KVWrite struct {
	Key        string
	Value      []byte
	Expiration int64
	Metadata   json.RawMessage
}

func (c *Client) kvNamespaces() *kv.NamespaceService { return kv.NewNamespaceService(c.opts...) }

const kvPerm = "Workers KV Storage Read"

// ListKVNamespaces returns every KV namespace of the account (page-numbered pagination).
func (c *Client) ListKVNamespaces(ctx context.Context) ([]KVNamespace, error) {
	raws, err := pagedRaw("list KV namespaces", kvPerm, func(page int) (json.RawMessage, error) {
		var p kv.NamespaceListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.PerPage.Value, p.PerPage.Present = 100, true
		p.Page.Value, p.Page.Present = float64(page), true
		var raw json.RawMessage
		_, err := c.kvNamespaces().List(ctx, p, option.WithResponseBodyInto(&raw))
		return raw, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]KVNamespace, 0, len(raws))
	for _, r := range raws {
		var n KVNamespace
		if err := json.Unmarshal(r, &n); err != nil {
			return nil, fmt.Errorf("list KV namespaces: unexpected entry: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

// ResolveKVNamespace finds a namespace by id or title.
func (c *Client) ResolveKVNamespace(ctx context.Context, ref string) (KVNamespace, error) {
	all, err := c.ListKVNamespaces(ctx)
	if err != nil {
		return KVNamespace{}, err
	}
	for _, n := range all {
		if n.ID == ref {
			return n, nil
		}
	}
	var match []KVNamespace
	for _, n := range all {
		if n.Title == ref {
			match = append(match, n)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	titles := make([]string, 0, len(all))
	for _, n := range all {
		titles = append(titles, n.Title)
	}
	if len(match) > 1 {
		return KVNamespace{}, fmt.Errorf("%w: KV namespace title %q is ambiguous (%d namespaces); name it by id", errclass.Usage, ref, len(match))
	}
	return KVNamespace{}, fmt.Errorf("KV namespace %q: %w (namespaces in this account: %s)", ref, ErrNotFound, strings.Join(titles, ", "))
}

// kvKeyPage is one page of a key listing.
type kvKeyPage struct {
	Result     []KVKey `json:"result"`
	ResultInfo struct {
		Count  int    `json:"count"`
		Cursor string `json:"cursor"`
	} `json:"result_info"`
}

// ListKVKeys calls fn with every key of a namespace under prefix, a page (up to limit, 10..1000) at
// a time, in the API's order (ascending bytes of the names).
func (c *Client) ListKVKeys(ctx context.Context, namespaceID, prefix string, limit int, fn func([]KVKey) error) error {
	limit = max(10, min(limit, KVListLimit))
	what := fmt.Sprintf("list keys of KV namespace %s", namespaceID)
	svc := kv.NewNamespaceKeyService(c.opts...)
	cursor := ""
	for {
		var p kv.NamespaceKeyListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.Limit.Value, p.Limit.Present = float64(limit), true
		if prefix != "" {
			p.Prefix.Value, p.Prefix.Present = prefix, true
		}
		if cursor != "" {
			p.Cursor.Value, p.Cursor.Present = cursor, true
		}
		var raw json.RawMessage
		if _, err := svc.List(ctx, namespaceID, p, option.WithResponseBodyInto(&raw)); err != nil {
			return kvClassify(err, what, kvPerm)
		}
		var page kvKeyPage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("%s: unexpected response: %w", what, err)
		}
		if len(page.Result) > 0 {
			for i := range page.Result {
				page.Result[i].Metadata = nullToNil(page.Result[i].Metadata)
			}
			if err := fn(page.Result); err != nil {
				return err
			}
		}
		next := page.ResultInfo.Cursor
		if next == "" || next == cursor || len(page.Result) == 0 {
			return nil
		}
		cursor = next
	}
}

func nullToNil(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}

// BulkGetKV reads up to KVBulkGetKeys values as text with their metadata (POST …/bulk/get). The API
// reads only text values: a value that is not valid UTF-8 comes back altered (U+FFFD) or fails the
// whole request, so callers read such keys again with GetKVValue (KVTextSafe says which). An answer
// larger than KVBulkGetMaxResponse fails with ErrKVTooLarge.
func (c *Client) BulkGetKV(ctx context.Context, namespaceID string, keys []string) (map[string]KVBulkValue, error) {
	what := fmt.Sprintf("bulk read of KV namespace %s", namespaceID)
	if len(keys) > KVBulkGetKeys {
		return nil, errclass.Wrap(errclass.Failure, fmt.Errorf("%s: %d keys, at most %d per request", what, len(keys), KVBulkGetKeys))
	}
	body, err := json.Marshal(map[string]any{"keys": keys, "type": "text", "withMetadata": true})
	if err != nil {
		return nil, err
	}
	var p kv.NamespaceBulkGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	limit := KVBulkGetMaxResponse
	capped := option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(req)
		if err == nil && resp.StatusCode < 300 {
			resp.Body = &cappedBody{rc: resp.Body, left: limit}
		}
		return resp, err
	})
	if _, err := c.kvNamespaces().BulkGet(ctx, namespaceID, p, option.WithRequestBody("application/json", body), capped, option.WithResponseBodyInto(&raw)); err != nil {
		if errors.Is(err, ErrKVTooLarge) {
			return nil, fmt.Errorf("%s: %w (over %d bytes)", what, ErrKVTooLarge, limit)
		}
		return nil, kvClassify(err, what, kvPerm)
	}
	var env struct {
		Result struct {
			Values map[string]json.RawMessage `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%s: unexpected response: %w", what, err)
	}
	out := make(map[string]KVBulkValue, len(keys))
	for k, v := range env.Result.Values {
		if len(v) == 0 || string(v) == "null" {
			out[k] = KVBulkValue{}
			continue
		}
		var e struct {
			Value      *string         `json:"value"`
			Metadata   json.RawMessage `json:"metadata"`
			Expiration float64         `json:"expiration"`
		}
		if err := json.Unmarshal(v, &e); err != nil || e.Value == nil {
			return nil, fmt.Errorf("%s: unexpected value of a key (want {value, metadata}): %v", what, err)
		}
		out[k] = KVBulkValue{Found: true, Value: *e.Value, Metadata: nullToNil(e.Metadata), Expiration: int64(e.Expiration)}
	}
	return out, nil
}

// KVTextSafe reports whether a value read as text by BulkGetKV is certainly the stored bytes: the API
// replaces bytes that are not UTF-8 with U+FFFD, so a value holding U+FFFD is read again as bytes.
func KVTextSafe(v string) bool {
	return utf8.ValidString(v) && !strings.ContainsRune(v, utf8.RuneError)
}

// cappedBody fails a read past left bytes.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, ErrKVTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		return n, err
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// kvClassify is classifyFor, with the errors it leaves unclassed (a 4xx the API refused, a malformed
// answer) put in the Remote class.
func kvClassify(err error, what, perm string) error {
	err = classifyFor(err, what, perm)
	if errclass.Of(err) == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return errclass.Wrap(errclass.Remote, err)
	}
	return err
}

// kvKeyPath escapes a key for a request path.
func kvKeyPath(key string) string { return url.PathEscape(key) }

// GetKVValue streams one value's bytes (GET …/values/{key}) with its expiration (0 = none).
// A missing key is ErrNotFound. The caller closes the body.
func (c *Client) GetKVValue(ctx context.Context, namespaceID, key string) (io.ReadCloser, int64, error) {
	what := fmt.Sprintf("read a value of KV namespace %s", namespaceID)
	var p kv.NamespaceValueGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	resp, err := kv.NewNamespaceValueService(c.opts...).Get(ctx, namespaceID, kvKeyPath(key), p)
	if err != nil {
		return nil, 0, kvClassify(err, what, kvPerm)
	}
	var exp int64
	if h := resp.Header.Get("Expiration"); h != "" {
		f, err := strconv.ParseFloat(h, 64)
		if err == nil {
			exp = int64(f)
		}
	}
	return resp.Body, exp, nil
}

// GetKVMetadata returns one key's metadata (GET …/metadata/{key}), nil when it has none.
func (c *Client) GetKVMetadata(ctx context.Context, namespaceID, key string) (json.RawMessage, error) {
	what := fmt.Sprintf("read metadata of KV namespace %s", namespaceID)
	var p kv.NamespaceMetadataGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := kv.NewNamespaceMetadataService(c.opts...).Get(ctx, namespaceID, kvKeyPath(key), p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, kvClassify(err, what, kvPerm)
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	return nullToNil(env.Result), nil
}

// KVWriteSize is how many bytes a pair adds to a bulk write's body (an upper bound).
func KVWriteSize(w KVWrite) int {
	n := len(w.Key)*6 + len(w.Metadata) + 96
	if kvAsText(w.Value) {
		return n + jsonStringLen(w.Value)
	}
	return n + base64.StdEncoding.EncodedLen(len(w.Value))
}

// kvAsText says whether a value goes into a bulk write as a JSON string (valid UTF-8, and no longer
// escaped than in base64) rather than base64.
func kvAsText(v []byte) bool {
	return utf8.Valid(v) && jsonStringLen(v) <= base64.StdEncoding.EncodedLen(len(v))+2
}

// jsonStringLen is the length of v as a JSON string (encoding/json's escaping, HTML not escaped).
func jsonStringLen(v []byte) int {
	n := 2
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n += 2
			i++
		case c < 0x20:
			n += 6
			i++
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && (v[i+2] == 0xA8 || v[i+2] == 0xA9): // U+2028, U+2029
			n += 6
			i += 3
		default:
			n++
			i++
		}
	}
	return n
}

// EncodeKVWrites is the JSON body of a bulk write: UTF-8 values as strings, others base64 with
// "base64": true; expiration and metadata as stored.
func EncodeKVWrites(pairs []KVWrite) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i, w := range pairs {
		if i > 0 {
			buf.WriteByte(',')
		}
		type pair struct {
			Key        string          `json:"key"`
			Value      string          `json:"value"`
			Base64     bool            `json:"base64,omitempty"`
			Expiration int64           `json:"expiration,omitempty"`
			Metadata   json.RawMessage `json:"metadata,omitempty"`
		}
		pr := pair{Key: w.Key, Expiration: w.Expiration, Metadata: w.Metadata}
		if kvAsText(w.Value) {
			pr.Value = string(w.Value)
		} else {
			pr.Value, pr.Base64 = base64.StdEncoding.EncodeToString(w.Value), true
		}
		if err := enc.Encode(pr); err != nil {
			return nil, fmt.Errorf("encode a KV pair: %w", err)
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

type kvBulkResult struct {
	SuccessfulKeyCount int      `json:"successful_key_count"`
	UnsuccessfulKeys   []string `json:"unsuccessful_keys"`
}

// BulkPutKV writes pairs (PUT …/bulk): at most KVBulkPutPairs pairs and KVBulkPutBytes of body per
// call. Keys the API reports as not written are sent again (up to 3 times); keys still unwritten
// then are ErrKVPartial, with their count.
func (c *Client) BulkPutKV(ctx context.Context, namespaceID string, pairs []KVWrite) error {
	what := fmt.Sprintf("bulk write to KV namespace %s", namespaceID)
	if len(pairs) > KVBulkPutPairs {
		return errclass.Wrap(errclass.Failure, fmt.Errorf("%s: %d pairs, at most %d per request", what, len(pairs), KVBulkPutPairs))
	}
	for attempt := 0; len(pairs) > 0; attempt++ {
		body, err := EncodeKVWrites(pairs)
		if err != nil {
			return err
		}
		if len(body) > KVBulkPutBytes {
			return errclass.Wrap(errclass.Failure, fmt.Errorf("%s: request of %d bytes, at most %d", what, len(body), KVBulkPutBytes))
		}
		var p kv.NamespaceBulkUpdateParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		var raw json.RawMessage
		if _, err := c.kvNamespaces().BulkUpdate(ctx, namespaceID, p, option.WithRequestBody("application/json", body), option.WithResponseBodyInto(&raw)); err != nil {
			return kvClassify(err, what, "Workers KV Storage Write")
		}
		failed, err := kvUnsuccessful(raw, what)
		if err != nil {
			return err
		}
		if len(failed) == 0 {
			return nil
		}
		if attempt >= 2 {
			return fmt.Errorf("%s: %w: %d key(s) not written after %d attempts", what, ErrKVPartial, len(failed), attempt+1)
		}
		want := make(map[string]bool, len(failed))
		for _, k := range failed {
			want[k] = true
		}
		var again []KVWrite
		for _, w := range pairs {
			if want[w.Key] {
				again = append(again, w)
			}
		}
		pairs = again
	}
	return nil
}

func kvUnsuccessful(raw json.RawMessage, what string) ([]string, error) {
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	if len(env.Result) == 0 || string(env.Result) == "null" {
		return nil, nil
	}
	var res kvBulkResult
	if err := json.Unmarshal(env.Result, &res); err != nil {
		return nil, fmt.Errorf("%s: unexpected response: %w", what, err)
	}
	return res.UnsuccessfulKeys, nil
}

// BulkDeleteKV deletes keys (POST …/bulk/delete), at most KVBulkPutPairs per call.
func (c *Client) BulkDeleteKV(ctx context.Context, namespaceID string, keys []string) error {
	what := fmt.Sprintf("bulk delete in KV namespace %s", namespaceID)
	if len(keys) > KVBulkPutPairs {
		return errclass.Wrap(errclass.Failure, fmt.Errorf("%s: %d keys, at most %d per request", what, len(keys), KVBulkPutPairs))
	}
	body, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	var p kv.NamespaceBulkDeleteParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.kvNamespaces().BulkDelete(ctx, namespaceID, p, option.WithRequestBody("application/json", body), option.WithResponseBodyInto(&raw)); err != nil {
		return kvClassify(err, what, "Workers KV Storage Write")
	}
	failed, err := kvUnsuccessful(raw, what)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %w: %d key(s) not deleted", what, ErrKVPartial, len(failed))
	}
	return nil
}

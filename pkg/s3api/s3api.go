// Package s3api is cfbackup's one S3 client setup and its one upload path. The repository store
// (pkg/store/s3) and the R2 component's restores (pkg/source/r2) both go through it, so what was
// learned against providers applies to both and cannot drift apart again:
//
//   - The client is configured for the lowest common denominator of providers: no SDK-default
//     streamed checksums or aws-chunked bodies (R2 rejected them), seekable bodies with a known
//     length, and no "Expect: 100-continue" towards R2, which does not implement it
//     (docs/CLOUDFLARE_FACTS.md §3.3).
//   - Every request body carries exactly one checksum the server verifies (R2 refuses two,
//     docs/CLOUDFLARE_FACTS.md §3.4), with UNSIGNED-PAYLOAD signing: x-amz-checksum-crc32c (hardware
//     CRC32C, nearly free on both sides; the SHA-256 payload hash halved multipart throughput on a
//     2-core machine and Content-MD5 cost ~1.5 s of CPU per GiB), and Content-MD5 from then on once a
//     server refused the CRC32C header, since MD5 is what every S3 implementation checks.
//   - An object of unknown size streams: it is cut into equal-size parts (R2 rejects unequal
//     non-final parts) uploaded with bounded concurrency from a reused buffer pool, so memory stays
//     near PartSize × (Concurrency+1) per upload whatever the object size. The reader is read to its
//     end before anything is committed, so a reader that checks its content at EOF (a restore's item
//     reader checks the catalogue's SHA-256 there) keeps a bad body from ever appearing.
//   - An object of known size (PutOptions.Size) up to SinglePutMax (PartSize × Concurrency) goes
//     with one PUT, read into the part buffers its multipart upload would hold at most (with a
//     Budget, the slots they stand for are taken at once first) and sent as one seekable body: one
//     request instead of create + parts + complete, no reassembly of parts on the server, and an
//     ETag that is the object's MD5. Its reader is read to its end before the PUT, as above.
//   - A failed multipart upload is aborted, again until it is gone (Abort).
//   - Conditional creates use If-None-Match: * on PutObject and CompleteMultipartUpload, and a retried
//     request that meets 412 checks whether the object there is its own.
//
// Each request (including each part) is retried by the SDK's standard retryer.
package s3api

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Limits and defaults of the multipart upload.
const (
	// DefaultPartSize balances throughput against memory (PartSize × (Concurrency+1) per upload).
	DefaultPartSize = 8 << 20
	// MinPartSize is the smallest non-final part AWS S3 and R2 accept.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part R2 accepts (5 GiB − 5 MiB).
	MaxPartSize = 5<<30 - 5<<20
	// MaxParts is the S3 and R2 limit on parts per upload.
	MaxParts = 10000
	// DefaultConcurrency is the number of parts in flight per upload.
	DefaultConcurrency = 4
	// R2Concurrency is used against R2, which throttles parallel parts of one upload.
	R2Concurrency = 2
)

var (
	// ErrConfig: the Config cannot work; the message names the field.
	ErrConfig = errclass.New(errclass.Usage, "s3: invalid configuration")
	// ErrTooLarge: the object needs more than MaxParts parts of PartSize.
	ErrTooLarge = errors.New("object too large for the configured part size")
	// ErrExists: a conditional create (PutOptions.IfNotExists) found the key taken before it
	// uploaded anything. A create refused by the server itself comes back as its 412 error instead.
	ErrExists = errors.New("object already exists")
	// ErrLength: the body is longer than PutOptions.Size (a shorter one is io.ErrUnexpectedEOF).
	ErrLength = errors.New("body longer than its declared size")
)

// Config says how to reach an S3 endpoint. Secrets in it are never printed.
type Config struct {
	// Endpoint is the S3 endpoint URL; empty means AWS S3.
	Endpoint string
	// Region defaults to "auto" for R2 and "us-east-1" otherwise.
	Region string
	// AccessKeyID and SecretAccessKey select static credentials; when both are empty the SDK's
	// default chain (environment, shared files, instance role) is used.
	AccessKeyID, SecretAccessKey, SessionToken string
	// PathStyle forces path-style addressing; it is on anyway for any non-AWS Endpoint.
	PathStyle bool
	// PartSize is the size of each multipart part (default DefaultPartSize, at least MinPartSize).
	PartSize int64
	// Concurrency is the number of parts uploaded at once per upload (default 4, 2 for R2). With 1,
	// parts go one after another and the next is read only once the last one is sent, so an upload
	// of known size (PutOptions.Size) holds one part buffer: for callers that run many uploads at
	// once (a restore of many objects) and bound memory by their own parallelism.
	Concurrency int
	// SinglePutMax is the largest object of known size (PutOptions.Size) sent with one PUT instead of
	// a multipart upload: 0 means PartSize × Concurrency, the most a multipart upload of it holds in
	// part buffers anyway; below PartSize it is PartSize.
	SinglePutMax int64
	// HTTPClient replaces the SDK's HTTP client (tests, proxies).
	HTTPClient *http.Client
}

// Client is an S3 client plus the upload state learned from the server (whether it takes CRC32C),
// shared by every upload through it.
type Client struct {
	api         *awss3.Client
	partSize    int64
	concurrency int
	singleMax   int64 // Config.SinglePutMax
	// free is a bounded free list of part buffers: unlike sync.Pool it survives GC, so a long
	// upload reuses the same Concurrency+1 buffers instead of allocating per part.
	free chan *[]byte
	// noCRC is set once the server refused a CRC32C header: Content-MD5 from then on.
	noCRC atomic.Bool
	// crcParts is set once a part with CRC32C was accepted; until then the first part of an upload
	// goes alone, so a server that takes CRC32C at create but refuses it on parts costs a restart
	// of that upload with Content-MD5, not a failed upload.
	crcParts atomic.Bool
}

// IsR2 reports whether endpoint is a Cloudflare R2 S3 endpoint, whose quirks the client adapts to.
func IsR2(endpoint string) bool {
	return strings.HasSuffix(hostOf(endpoint), "r2.cloudflarestorage.com")
}

func isAWS(endpoint string) bool {
	h := hostOf(endpoint)
	return strings.HasSuffix(h, ".amazonaws.com") || strings.HasSuffix(h, ".amazonaws.com.cn")
}

func hostOf(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// New checks cfg and builds the client; it makes no request.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Endpoint != "" {
		if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint must be an http(s) URL like https://ACCOUNT.r2.cloudflarestorage.com", ErrConfig)
		}
	}
	r2 := IsR2(cfg.Endpoint)
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
		if r2 {
			region = "auto"
		}
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize || partSize > MaxPartSize {
		return nil, fmt.Errorf("%w: part size %d outside [%d, %d]", ErrConfig, partSize, MinPartSize, MaxPartSize)
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
		if r2 {
			conc = R2Concurrency
		}
	}
	var awsCfg aws.Config
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, fmt.Errorf("%w: set both the access key ID and the secret access key", ErrConfig)
		}
		awsCfg = aws.Config{
			Region:      region,
			Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken),
		}
	} else {
		var err error
		awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("s3: load default AWS config: %w", err)
		}
	}
	if cfg.HTTPClient != nil {
		awsCfg.HTTPClient = cfg.HTTPClient
	}
	// Only the checksums an operation requires: R2 rejects aws-chunked bodies and trailing checksums.
	awsCfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	awsCfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	api := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle || (cfg.Endpoint != "" && !isAWS(cfg.Endpoint))
		// A part or a streamed segment can be replayed only by the SDK (it holds the buffer): give it
		// as many tries as pkg/store/retry gives replayable calls, not the SDK's default 3, and no
		// client-side retry quota — a long backup under throttling would drain it and then fail at
		// once instead of backing off.
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = RetryAttempts
			so.RateLimiter = ratelimit.None
		})
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if r2 {
			// R2 does not implement "Expect: 100-continue" (docs/CLOUDFLARE_FACTS.md §3.3): without this every
			// PUT over 2 MB would wait out the client's continue timeout first.
			o.ContinueHeaderThresholdBytes = -1
		}
	})
	single := cfg.SinglePutMax
	if single == 0 {
		single = partSize * int64(conc)
	}
	single = min(max(single, partSize), MaxPartSize)
	return &Client{api: api, partSize: partSize, concurrency: conc, singleMax: single, free: make(chan *[]byte, conc+1)}, nil
}

// RetryAttempts is the tries (first included) the SDK makes of each request.
const RetryAttempts = 5

// API is the SDK client, for the operations other than uploads (reads, listings, deletes, Object Lock).
func (c *Client) API() *awss3.Client { return c.api }

// PartSize is the multipart part size: objects up to it are uploaded with one PUT.
func (c *Client) PartSize() int64 { return c.partSize }

// SinglePutMax is the largest object of known size uploaded with one PUT (Config.SinglePutMax).
func (c *Client) SinglePutMax() int64 { return c.singleMax }

// SinglePutSlots is the Budget slots a single PUT of size bytes takes beside the uploader's own
// part buffer: its buffer holds that many part sizes more (0 up to PartSize).
func (c *Client) SinglePutSlots(size int64) int {
	return int(max((size+c.partSize-1)/c.partSize-1, 0))
}

// UploadBufferBytes is the most memory the part buffers of one upload in flight take, so a process
// that sets a soft memory limit can account for them.
func (c *Client) UploadBufferBytes() int64 { return c.partSize * int64(c.concurrency+1) }

// Headers are the object's HTTP headers and user metadata an upload sets (a restore gives an object
// back the ones it was backed up with).
type Headers struct {
	ContentType, CacheControl, ContentEncoding, ContentDisposition, ContentLanguage string
	// Expires is set when non-nil.
	Expires *time.Time
	// Metadata is the x-amz-meta-* user metadata.
	Metadata map[string]string
}

// PutOptions modify an upload.
type PutOptions struct {
	// IfNotExists makes the upload a conditional create (If-None-Match: *): it fails when the key
	// is taken, with ErrExists or the server's 412, and never replaces an object.
	IfNotExists bool
	Headers     Headers
	// Size, when positive, is the body's exact length: a body of another length fails (ErrLength,
	// io.ErrUnexpectedEOF) and nothing is stored, and the upload need not read a second part ahead
	// to choose between one PUT and a multipart upload. Zero means unknown (an empty body needs no
	// read-ahead anyway).
	Size int64
	// StorageClass, when set, is sent as x-amz-storage-class on the PUT or the multipart create.
	StorageClass string
	// Budget, when set, bounds this upload's part buffers together with those of the other uploads
	// carrying the same Budget (see Budget).
	Budget *Budget
}

// sizedReader fails a body that is not exactly its declared size: longer as soon as it is, shorter at
// its end.
type sizedReader struct {
	r          io.Reader
	left, size int64
}

func (e *sizedReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case e.left < 0:
		return n, fmt.Errorf("%w (%d bytes)", ErrLength, e.size)
	case err == io.EOF && e.left > 0:
		return n, fmt.Errorf("%w: the body ended %d bytes before its declared %d", io.ErrUnexpectedEOF, e.left, e.size)
	}
	return n, err
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func md5b64(b []byte) *string { return md5Bufs([][]byte{b}) }

// castagnoli is the CRC32C table; Go computes it with the CPU's CRC instructions (>10 GB/s).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the x-amz-checksum-crc32c value of b (the big-endian CRC, base64): the request checksum
// uploads carry, which the server verifies.
func CRC32C(b []byte) *string { return crc32cBufs([][]byte{b}) }

// CRCRefused says a server refused a CRC32C checksum header itself (not a mismatch): a 501 (R2
// answered that to CRC headers before it supported them), or a 400 other than BadDigest whose
// message names the header. The client falls back to Content-MD5.
func CRCRefused(err error) bool {
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	status := HTTPStatus(err)
	switch {
	case code == "NotImplemented" || status == http.StatusNotImplemented:
		return true
	case status == http.StatusBadRequest && code != "BadDigest" && ae != nil:
		m := strings.ToLower(ae.ErrorMessage())
		return strings.Contains(m, "crc32c") || strings.Contains(m, "checksum algorithm")
	}
	return false
}

// HTTPStatus is the HTTP status of an SDK error, 0 when it has none.
func HTTPStatus(err error) int {
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) {
		return sc.HTTPStatusCode()
	}
	return 0
}

// ErrorCode is the S3 error code of an SDK error ("NoSuchKey", …), "" when it has none.
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// IsPreconditionFailed reports a 412: a conditional request whose condition did not hold.
func IsPreconditionFailed(err error) bool {
	return HTTPStatus(err) == http.StatusPreconditionFailed || ErrorCode(err) == "PreconditionFailed"
}

// fill reads until buf is full or the reader ends. Unlike io.ReadFull it never mistakes a reader's
// own io.ErrUnexpectedEOF (a truncated source) for a clean end of stream.
func fill(ctx context.Context, r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

func (c *Client) getBuf() *[]byte {
	select {
	case b := <-c.free:
		return b
	default:
		b := make([]byte, c.partSize)
		return &b
	}
}

func (c *Client) putBuf(b *[]byte) {
	if b == nil {
		return
	}
	select {
	case c.free <- b:
	default: // more buffers than one upload needs (concurrent uploads): let GC have it
	}
}

// Budget bounds the part buffers of several uploads in flight at once, for a caller that runs many
// (a restore's object workers) and wants parallel parts without memory growing with the product
// of both. Each upload's first buffer is the caller's own (one per worker, which the caller bounds
// by its parallelism); every further buffer an upload holds at the same time takes one of the
// budget's slots until it is given back. So n uploads with a budget of k slots hold at most n+k part
// buffers together, an upload alone runs up to min(Concurrency, k+1) parts at once, and uploads
// that find the budget taken go on one part at a time rather than wait for it (no deadlock: an
// upload only ever waits for a slot while a part of its own is in flight).
type Budget struct {
	slots chan struct{}
	pool  *Pool
	// reserving lets one Reserve at a time wait for slots, so two cannot each hold part of what
	// both need.
	reserving sync.Mutex
}

// NewBudget makes a budget of k extra part buffers shared by the uploads that carry it.
func NewBudget(k int) *Budget {
	return &Budget{slots: make(chan struct{}, max(k, 0))}
}

// NewBudgetPool is NewBudget whose uploads take their part buffers from pool and give them back
// there, instead of the client's free list (which keeps one upload's Concurrency+1 buffers and
// lets the others' go to the collector): uploads in flight together reuse what the pool's bound
// allows, up to every worker's buffer and the k slots'.
func NewBudgetPool(k int, pool *Pool) *Budget {
	b := NewBudget(k)
	b.pool = pool
	return b
}

// Reserve takes n of the budget's slots at once, for an upload whose one buffer holds n part sizes
// more than its own part buffer (a single PUT of an object over the part size, SinglePutSlots), and
// returns the function that gives them back. It waits while the slots are taken: one Reserve waits
// at a time, and every other holder of slots gives them back without waiting for anything a
// reservation holds (multipart uploads hold slots only while their parts are in flight), so the wait
// ends. ok is false, and nothing is taken, when the budget has fewer than n slots at all; a nil
// budget reserves nothing (ok, no bound).
func (b *Budget) Reserve(ctx context.Context, n int) (release func(), ok bool, err error) {
	if b == nil || n <= 0 {
		return func() {}, true, nil
	}
	if n > cap(b.slots) {
		return nil, false, nil
	}
	give := func(k int) {
		for range k {
			<-b.slots
		}
	}
	b.reserving.Lock()
	defer b.reserving.Unlock()
	for i := range n {
		select {
		case b.slots <- struct{}{}:
		case <-ctx.Done():
			give(i)
			return nil, false, ctx.Err()
		}
	}
	return sync.OnceFunc(func() { give(n) }), true, nil
}

// InUse is the number of the budget's slots taken now (tests check the bound with it).
func (b *Budget) InUse() int { return len(b.slots) }

// holder counts the part buffers one upload holds and takes Budget slots for all but the first.
type holder struct {
	c      *Client
	budget *Budget // nil: no shared bound (Concurrency+1 buffers per upload)

	mu    sync.Mutex
	held  int
	freed chan struct{} // signalled whenever a buffer comes back
}

// poolSlack is what a part buffer taken from a Pool has beyond the part size: room for an object
// of the part size read whole with its archive framing (a tar header, padding), so that one buffer
// class serves both a restore's parts and its objects read whole.
const poolSlack = 32 << 10

// buf is a new part buffer: from the budget's pool when it has one, else the client's free list.
func (h *holder) buf() *[]byte {
	if h.budget != nil && h.budget.pool != nil {
		b := h.budget.pool.Get(int(h.c.partSize) + poolSlack)[:h.c.partSize]
		return &b
	}
	return h.c.getBuf()
}

// get returns a part buffer, waiting for a budget slot (or for one of the upload's own buffers to
// come back) when the upload already holds one.
func (h *holder) get(ctx context.Context) (*[]byte, error) {
	if h.budget == nil {
		return h.buf(), nil
	}
	h.mu.Lock()
	if h.freed == nil {
		h.freed = make(chan struct{}, 1)
	}
	for h.held > 0 {
		h.mu.Unlock()
		select {
		case h.budget.slots <- struct{}{}:
			h.mu.Lock()
			if h.held == 0 { // its own buffers all came back meanwhile: this one needs no slot
				<-h.budget.slots
			}
			h.held++
			h.mu.Unlock()
			return h.buf(), nil
		case <-h.freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		h.mu.Lock()
	}
	h.held = 1
	h.mu.Unlock()
	return h.buf(), nil
}

// putNoSlot gives back a buffer taken with buf (no slot of its own).
func (h *holder) putNoSlot(b *[]byte) {
	if h.budget != nil && h.budget.pool != nil {
		h.budget.pool.Put(*b)
	} else {
		h.c.putBuf(b)
	}
}

// put gives a buffer back (nil is ignored) and, for all but the upload's last one, its budget slot.
func (h *holder) put(b *[]byte) {
	if b == nil {
		return
	}
	if h.budget == nil {
		h.c.putBuf(b)
		return
	}
	if h.budget.pool != nil {
		h.budget.pool.Put(*b)
	} else {
		h.c.putBuf(b)
	}
	h.mu.Lock()
	if h.held > 1 {
		<-h.budget.slots
	}
	h.held--
	h.mu.Unlock()
	select {
	case h.freed <- struct{}{}:
	default:
	}
}

// Put streams r to bucket/key: one PUT when r ends within one part, else a multipart upload (see the
// package comment). It reads r to its end before the object is committed, and on any error leaves no
// object and no multipart upload. Errors keep the SDK error (and its HTTP status) in their chain for
// the caller to classify; r's own errors come back as they are.
func (c *Client) Put(ctx context.Context, bucket, key string, r io.Reader, o PutOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.Size > 0 {
		r = &sizedReader{r: r, left: o.Size, size: o.Size}
	}
	if o.Size > c.partSize && o.Size <= c.singleMax {
		if done, err := c.putWhole(ctx, bucket, key, r, o); done {
			return err
		}
	}
	h := &holder{c: c, budget: o.Budget}
	b1, _ := h.get(ctx) // the first buffer is the caller's own: it never waits

	n1, eof, err := fill(ctx, r, *b1)
	if err != nil {
		h.put(b1)
		return err
	}
	if eof {
		defer h.put(b1)
		return c.PutBytes(ctx, bucket, key, (*b1)[:n1], o)
	}
	if o.Size > 0 && o.Size <= c.partSize { // exactly one part: reach the end (and the reader's check there)
		defer h.put(b1)
		var probe [1]byte
		if _, _, err := fill(ctx, r, probe[:]); err != nil {
			return err
		}
		return c.PutBytes(ctx, bucket, key, (*b1)[:n1], o)
	}
	if o.Size > 0 { // more than one part: multipart, without reading a second part ahead
		return c.putMultipart(ctx, h, bucket, key, b1, nil, 0, false, r, o)
	}
	b2, err := h.get(ctx)
	if err != nil {
		h.put(b1)
		return err
	}
	n2, eof, err := fill(ctx, r, *b2)
	if err != nil {
		h.put(b1)
		h.put(b2)
		return err
	}
	if n2 == 0 && eof { // exactly one part's worth
		h.put(b2)
		defer h.put(b1)
		return c.PutBytes(ctx, bucket, key, (*b1)[:n1], o)
	}
	return c.putMultipart(ctx, h, bucket, key, b1, b2, n2, eof, r, o)
}

// putWhole reads an object of known size over the part size but within SinglePutMax into part
// buffers (the ones a multipart upload of it would hold at most, from the budget's pool and slots:
// SinglePutSlots) and sends them with one PUT: one request instead of create + parts + complete,
// and no reassembly of parts on the server. The reader is read to its end (and its check there)
// before the PUT. done is false, with nothing read, when the budget has too few slots for it at all
// (the caller uploads it in parts).
func (c *Client) putWhole(ctx context.Context, bucket, key string, r io.Reader, o PutOptions) (done bool, err error) {
	slots := c.SinglePutSlots(o.Size)
	release, ok, err := o.Budget.Reserve(ctx, slots)
	if !ok {
		return err != nil, err
	}
	defer release()
	// The reserved slots stand for these buffers: taken without the holder's per-buffer slots.
	h := &holder{c: c, budget: o.Budget}
	bufs := make([]*[]byte, 0, slots+1)
	defer func() {
		for _, b := range bufs {
			h.putNoSlot(b)
		}
	}()
	data := make([][]byte, 0, slots+1)
	for left := o.Size; left > 0; {
		b := h.buf()
		bufs = append(bufs, b)
		n, _, err := fill(ctx, r, (*b)[:min(int64(len(*b)), left)])
		if err != nil {
			return true, err
		}
		data = append(data, (*b)[:n])
		left -= int64(n)
		if n == 0 {
			break
		}
	}
	var probe [1]byte // the end of r, and its check there (sizedReader fails a short or long body)
	if _, _, err := fill(ctx, r, probe[:]); err != nil {
		return true, err
	}
	return true, c.putBufs(ctx, bucket, key, data, o)
}

// PutBytes uploads data with one PUT (at most MaxPartSize bytes), with the checksum header and the
// conditional-create handling of Put.
func (c *Client) PutBytes(ctx context.Context, bucket, key string, data []byte, o PutOptions) error {
	return c.putBufs(ctx, bucket, key, [][]byte{data}, o)
}

// putBufs uploads the buffers back to back as one object with one PUT (PutBytes).
func (c *Client) putBufs(ctx context.Context, bucket, key string, data [][]byte, o PutOptions) error {
	body := newBufsReader(data)
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		ContentLength: aws.Int64(body.size),
	}
	h := o.Headers
	in.ContentType, in.CacheControl, in.ContentEncoding = strp(h.ContentType), strp(h.CacheControl), strp(h.ContentEncoding)
	in.ContentDisposition, in.ContentLanguage, in.Metadata, in.Expires = strp(h.ContentDisposition), strp(h.ContentLanguage), h.Metadata, h.Expires
	var sent atomic.Int32 // requests that reached the wire, SDK retries included
	apiOpts := []func(*awss3.Options){awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware, countAttempts(&sent))}
	if o.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	if o.StorageClass != "" {
		in.StorageClass = types.StorageClass(o.StorageClass)
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// One checksum only: R2 refuses a request with two.
		crc := !c.noCRC.Load()
		if crc {
			in.ChecksumCRC32C, in.ContentMD5 = crc32cBufs(data), nil
		} else {
			in.ChecksumCRC32C, in.ContentMD5 = nil, md5Bufs(data)
		}
		body.off = 0
		in.Body = body
		before := sent.Load()
		_, err := c.api.PutObject(ctx, in, apiOpts...)
		if crc && CRCRefused(err) {
			sent.Store(before) // refused outright: that request stored nothing
			c.noCRC.Store(true)
			continue
		}
		// AWS answers 409 ConditionalRequestConflict when a concurrent conditional write is in
		// flight; retrying then yields the real answer (200 or 412).
		if err != nil && ErrorCode(err) == "ConditionalRequestConflict" && attempt < 5 {
			select {
			case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if o.IfNotExists && err != nil && sent.Load() > 1 && IsPreconditionFailed(err) {
			// An earlier request of ours may have stored the object and lost its answer: identical
			// content there is our own create, not someone else's.
			same, cerr := c.sameContent(ctx, bucket, key, data)
			if cerr != nil {
				return fmt.Errorf("a retried conditional create met 412 and the object could not be read back to tell whether it is ours: %w", cerr)
			}
			if same {
				return nil
			}
		}
		return err
	}
}

// countAttempts counts every request the SDK's retry loop sends (it runs after the "Retry" step).
func countAttempts(n *atomic.Int32) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("cfbackupCountAttempts",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				n.Add(1)
				return next.HandleFinalize(ctx, in)
			}), "Retry", middleware.After)
	}
}

// sameContent reports whether key holds exactly the buffers back to back (size, then SHA-256 of a
// full read).
func (c *Client) sameContent(ctx context.Context, bucket, key string, data [][]byte) (bool, error) {
	out, err := c.api.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return false, err
	}
	defer out.Body.Close()
	size := newBufsReader(data).size
	if aws.ToInt64(out.ContentLength) != size {
		return false, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		return false, err
	}
	return n == size && bytes.Equal(h.Sum(nil), sha256Bufs(data)), nil
}

// multipartETag is the ETag S3 (and versitygw, MinIO) gives a completed multipart upload: the MD5 of
// the parts' binary MD5s, "-", the part count. "" when a part ETag is not a plain MD5 (R2).
func multipartETag(parts []partResult) string {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(aws.ToString(p.etag), `"`))
		if err != nil || len(b) != md5.Size {
			return ""
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts))
}

// compositeCRC32C is the full-object checksum S3 reports for a multipart upload with CRC32C parts:
// the CRC32C of the parts' binary CRCs, "-", the part count. "" when a part has none.
func compositeCRC32C(parts []partResult) string {
	var all []byte
	for _, p := range parts {
		b, err := base64.StdEncoding.DecodeString(aws.ToString(p.crc))
		if p.crc == nil || err != nil || len(b) != 4 {
			return ""
		}
		all = append(all, b...)
	}
	return aws.ToString(CRC32C(all)) + fmt.Sprintf("-%d", len(parts))
}

// completedIsOurs checks, after a retried CompleteMultipartUpload failed (412, or NoSuchUpload because
// the first request completed it), that key is the object this upload made: its size, and its
// multipart ETag or composite CRC32C computed from our own parts.
func (c *Client) completedIsOurs(ctx context.Context, bucket, key string, parts []partResult, size int64) bool {
	out, err := c.api.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToInt64(out.ContentLength) != size {
		return false
	}
	if e := multipartETag(parts); e != "" && strings.Trim(aws.ToString(out.ETag), `"`) == e {
		return true
	}
	if cs := compositeCRC32C(parts); cs != "" && aws.ToString(out.ChecksumCRC32C) == cs {
		return true
	}
	return false
}

type partResult struct {
	num  int32
	etag *string
	crc  *string // the part's CRC32C when the upload declared it
	size int64
}

// putMultipart uploads b1 (full), b2 (n2 bytes; nil when not read ahead) and the rest of r as parts of
// one upload. It owns both buffers and returns each to the free list as soon as its part is uploaded.
// On any error the upload is aborted.
func (c *Client) putMultipart(ctx context.Context, h *holder, bucket, key string, b1, b2 *[]byte, n2 int, eof bool, r io.Reader, o PutOptions) (retErr error) {
	if o.IfNotExists { // fail fast before uploading gigabytes; Complete's If-None-Match is what is atomic
		if err := c.notExists(ctx, bucket, key); err != nil {
			h.put(b1)
			h.put(b2)
			return err
		}
	}
	// Parts carry CRC32C (declared at create) unless the server refused it before.
	u := &upload{c: c, h: h, bucket: bucket, key: key, o: o, crc: !c.noCRC.Load()}
	if err := u.create(ctx); err != nil {
		h.put(b1)
		h.put(b2)
		return err
	}
	defer func() {
		if retErr != nil && u.id != nil {
			Abort(ctx, c.api, bucket, key, u.id)
		}
	}()
	if u.crc && !c.crcParts.Load() {
		err := u.firstAlone(ctx, *b1)
		h.put(b1)
		if err != nil {
			h.put(b2)
			return err
		}
		b1 = nil
	}
	if err := u.sendAll(ctx, b1, b2, n2, eof, r); err != nil {
		return err
	}
	return u.complete(ctx)
}

// notExists is nil when key is not there, ErrExists when it is, or the error that kept HEAD from telling.
func (c *Client) notExists(ctx context.Context, bucket, key string) error {
	_, err := c.api.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		return ErrExists
	case HTTPStatus(err) == http.StatusNotFound || ErrorCode(err) == "NotFound" || ErrorCode(err) == "NoSuchKey":
		return nil
	}
	return err
}

// upload is one multipart upload in progress.
type upload struct {
	c           *Client
	h           *holder
	bucket, key string
	o           PutOptions
	// id is the upload id; nil once nothing is left to abort.
	id *string
	// crc: parts carry CRC32C (the upload declared it); else Content-MD5.
	crc bool

	mu       sync.Mutex
	firstErr error
	parts    []partResult
	cancel   context.CancelFunc
}

// create starts the upload; a refusal of CRC32C is remembered and the upload created with MD5 parts.
func (u *upload) create(ctx context.Context) error {
	out, err := u.createOnce(ctx)
	if u.crc && CRCRefused(err) {
		u.c.noCRC.Store(true)
		u.crc = false
		out, err = u.createOnce(ctx)
	}
	if err != nil {
		return err
	}
	u.id = out.UploadId
	return nil
}

func (u *upload) createOnce(ctx context.Context) (*awss3.CreateMultipartUploadOutput, error) {
	h := u.o.Headers
	in := &awss3.CreateMultipartUploadInput{Bucket: aws.String(u.bucket), Key: aws.String(u.key)}
	in.ContentType, in.CacheControl, in.ContentEncoding = strp(h.ContentType), strp(h.CacheControl), strp(h.ContentEncoding)
	in.ContentDisposition, in.ContentLanguage, in.Metadata, in.Expires = strp(h.ContentDisposition), strp(h.ContentLanguage), h.Metadata, h.Expires
	if u.crc {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
	}
	if u.o.StorageClass != "" {
		in.StorageClass = types.StorageClass(u.o.StorageClass)
	}
	return u.c.api.CreateMultipartUpload(ctx, in)
}

// sendPart uploads one part with its checksum header.
func (u *upload) sendPart(ctx context.Context, num int32, data []byte) (partResult, error) {
	in := &awss3.UploadPartInput{
		Bucket: aws.String(u.bucket), Key: aws.String(u.key), UploadId: u.id,
		PartNumber: aws.Int32(num), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	}
	if u.crc {
		in.ChecksumCRC32C = CRC32C(data)
	} else {
		in.ContentMD5 = md5b64(data)
	}
	out, err := u.c.api.UploadPart(ctx, in, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return partResult{}, err
	}
	if u.crc {
		u.c.crcParts.Store(true)
	}
	return partResult{num, out.ETag, in.ChecksumCRC32C, int64(len(data))}, nil
}

// firstAlone sends part 1 by itself while no CRC32C part has been accepted yet: a server that took
// CRC32C at create but refuses it on parts gets the upload started over with Content-MD5 instead of
// a failed upload.
func (u *upload) firstAlone(ctx context.Context, data []byte) error {
	p, err := u.sendPart(ctx, 1, data)
	if CRCRefused(err) {
		Abort(ctx, u.c.api, u.bucket, u.key, u.id)
		u.id = nil
		u.c.noCRC.Store(true)
		u.crc = false
		if err := u.create(ctx); err != nil {
			return err
		}
		p, err = u.sendPart(ctx, 1, data)
	}
	if err != nil {
		return fmt.Errorf("part 1: %w", err)
	}
	u.parts = append(u.parts, p)
	return nil
}

func (u *upload) fail(err error) {
	u.mu.Lock()
	if u.firstErr == nil {
		u.firstErr = err
	}
	u.mu.Unlock()
	u.cancel()
}

// sendAll uploads b1 (unless nil: part 1 went alone), b2 (n2 bytes) and the rest of r, up to
// Concurrency parts at once. The buffer being filled plus the parts in flight bound the memory.
func (u *upload) sendAll(ctx context.Context, b1, b2 *[]byte, n2 int, eof bool, r io.Reader) error {
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u.cancel = cancel
	var wg sync.WaitGroup
	sem := make(chan struct{}, u.c.concurrency)
	num := int32(1)
	ok := true
	if b1 != nil {
		ok = u.start(uctx, &wg, sem, num, b1, len(*b1))
	}
	if ok && n2 > 0 {
		num++
		ok = u.start(uctx, &wg, sem, num, b2, n2)
	} else {
		u.h.put(b2)
	}
	for ok && !eof {
		if num >= MaxParts {
			u.fail(fmt.Errorf("%w (%d parts of %d bytes)", ErrTooLarge, MaxParts, u.c.partSize))
			break
		}
		buf, err := u.h.get(uctx)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			u.fail(err)
			break
		}
		var n int
		n, eof, err = fill(uctx, r, *buf)
		if err != nil || n == 0 {
			u.h.put(buf)
			if err != nil && ctx.Err() != nil {
				err = ctx.Err() // the caller's cancellation, not our own after a failed part
			}
			if err != nil {
				u.fail(err)
			}
			break
		}
		num++
		ok = u.start(uctx, &wg, sem, num, buf, n)
	}
	wg.Wait()
	u.mu.Lock()
	err := u.firstErr
	u.mu.Unlock()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// start takes ownership of buf and uploads it as part num: in its own goroutine once one of the
// Concurrency slots is free, or, with Concurrency 1, before it returns (so the next part is read only
// once this one is sent). It reports whether the upload goes on.
func (u *upload) start(ctx context.Context, wg *sync.WaitGroup, sem chan struct{}, num int32, buf *[]byte, n int) bool {
	if u.c.concurrency == 1 {
		u.send(ctx, num, buf, n)
		return ctx.Err() == nil
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		u.h.put(buf)
		return false
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-sem }()
		u.send(ctx, num, buf, n)
	}()
	return true
}

// send uploads part num from buf, records it or the failure, and returns buf to the pool.
func (u *upload) send(ctx context.Context, num int32, buf *[]byte, n int) {
	defer u.h.put(buf)
	p, err := u.sendPart(ctx, num, (*buf)[:n])
	if err != nil {
		if u.crc && CRCRefused(err) {
			u.c.noCRC.Store(true)
		}
		u.fail(fmt.Errorf("part %d: %w", num, err))
		return
	}
	u.mu.Lock()
	u.parts = append(u.parts, p)
	u.mu.Unlock()
}

// complete lists the parts (with their CRCs) and completes the upload, conditionally when asked. A
// retried Complete that meets 412 or NoSuchUpload may be our own first request that landed and lost
// its answer: the object there is checked against our parts.
func (u *upload) complete(ctx context.Context) error {
	slices.SortFunc(u.parts, func(a, b partResult) int { return int(a.num - b.num) })
	completed := make([]types.CompletedPart, len(u.parts))
	var size int64
	for i, p := range u.parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.num), ETag: p.etag, ChecksumCRC32C: p.crc}
		size += p.size
	}
	in := &awss3.CompleteMultipartUploadInput{
		Bucket: aws.String(u.bucket), Key: aws.String(u.key), UploadId: u.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}
	if u.o.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	var sent atomic.Int32
	_, err := u.c.api.CompleteMultipartUpload(ctx, in, awss3.WithAPIOptions(countAttempts(&sent)))
	if err != nil && sent.Load() > 1 && (IsPreconditionFailed(err) || ErrorCode(err) == "NoSuchUpload") &&
		u.c.completedIsOurs(ctx, u.bucket, u.key, u.parts, size) {
		u.id = nil // completed: nothing to abort
		return nil
	}
	return err
}

// Abort aborts a multipart upload (even after ctx ended, for up to 30 s). A part whose request was
// cancelled may still be landing on the server as the abort arrives and bring the upload back (AWS
// documents calling abort again), so it aborts until ListParts says the upload is gone, a few times
// at most: an upload left behind accrues storage charges nobody sees.
func Abort(ctx context.Context, api *awss3.Client, bucket, key string, uploadID *string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		_, _ = api.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: uploadID})
		if _, err := api.ListParts(actx, &awss3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: uploadID}); err != nil {
			return // gone (NoSuchUpload), or the server cannot say: nothing more to do here
		}
		select {
		case <-time.After(time.Duration(i+1) * 100 * time.Millisecond):
		case <-actx.Done():
			return
		}
	}
}

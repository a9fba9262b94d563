// Package s3 stores a repository in an S3-compatible bucket (Cloudflare R2, AWS S3, MinIO, versitygw).
//
// Uploads stream: an object of unknown size is cut into equal-size parts (R2 rejects unequal
// non-final parts) uploaded with bounded concurrency from a reused buffer pool, so memory stays near
// PartSize × (Concurrency+1) per Put whatever the object size. Small objects take one PutObject.
// Conditional creates use If-None-Match: * on PutObject and CompleteMultipartUpload. The client is
// configured for the lowest common denominator of providers: no SDK-default streamed checksums or
// aws-chunked bodies (R2 rejected them), seekable bodies with a known length, and a CRC32C checksum
// header on every request body for integrity with UNSIGNED-PAYLOAD signing (the SHA-256 payload hash
// halved multipart throughput on a 2-core machine; Content-MD5, used before and still the fallback
// for servers that refuse CRC32C, cost ~1.5 s of CPU per GiB).
// Each request (including each part) is retried by the SDK's standard retryer.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Limits and defaults of the multipart upload.
const (
	// DefaultPartSize balances throughput against memory (PartSize × (Concurrency+1) per Put).
	DefaultPartSize = 8 << 20
	// MinPartSize is the smallest non-final part AWS S3 and R2 accept.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part R2 accepts (5 GiB − 5 MiB).
	MaxPartSize = 5<<30 - 5<<20
	// MaxParts is the S3 and R2 limit on parts per upload.
	MaxParts = 10000
	// DefaultConcurrency is the number of parts in flight per Put.
	DefaultConcurrency = 4
	// R2Concurrency is used against R2, which throttles parallel parts of one upload.
	R2Concurrency = 2
)

// Sentinel errors of this package.
var (
	// ErrConfig: the Config cannot work; the message names the field.
	ErrConfig = errclass.New(errclass.Usage, "s3 store: invalid configuration")
	// ErrNoSuchBucket: the bucket does not exist (kept apart from ErrNotFound so a typo in the
	// bucket name never looks like an empty repository).
	ErrNoSuchBucket = errclass.New(errclass.Repository, "s3 bucket does not exist")
	// ErrTooLarge: the object needs more than MaxParts parts of PartSize.
	ErrTooLarge = errors.New("object too large for the configured part size")
)

// Config selects a bucket and how to reach it. Secrets in it are never printed.
type Config struct {
	Bucket string
	// Prefix is prepended (with a "/") to every key, so several repositories can share a bucket.
	Prefix string
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
	// Concurrency is the number of parts uploaded at once per Put (default 4, 2 for R2).
	Concurrency int
	// HTTPClient replaces the SDK's HTTP client (tests, proxies).
	HTTPClient *http.Client
}

// Store is a bucket (and prefix) holding one repository.
type Store struct {
	client      *awss3.Client
	bucket      string
	prefix      string // "" or ends in "/"
	partSize    int64
	concurrency int
	// free is a bounded free list of part buffers: unlike sync.Pool it survives GC, so a long
	// upload reuses the same Concurrency+1 buffers instead of allocating per part.
	free chan *[]byte
	// noCRC is set once the server refused a CRC32C header: Content-MD5 from then on.
	noCRC atomic.Bool
	// crcParts is set once a part with CRC32C was accepted; until then the first part of an upload
	// goes alone, so a server that takes CRC32C at create but refuses it on parts costs a restart
	// of that upload with Content-MD5, not a failed Put.
	crcParts atomic.Bool
}

var _ store.Store = (*Store)(nil)

// IsR2 reports whether endpoint is a Cloudflare R2 S3 endpoint, whose quirks the store adapts to.
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

// New checks cfg and builds the client; it makes no request, so a missing bucket surfaces on first use.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: bucket name is empty", ErrConfig)
	}
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
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := store.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("%w: prefix: %w", ErrConfig, err)
		}
		prefix += "/"
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
			return nil, fmt.Errorf("s3 store: load default AWS config: %w", err)
		}
	}
	if cfg.HTTPClient != nil {
		awsCfg.HTTPClient = cfg.HTTPClient
	}
	awsCfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	awsCfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	client := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle || (cfg.Endpoint != "" && !isAWS(cfg.Endpoint))
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if r2 {
			// R2 does not implement "Expect: 100-continue" (docs/CLOUDFLARE_FACTS.md §3.3): without this every
			// part upload over 2 MB would wait out the client's continue timeout first.
			o.ContinueHeaderThresholdBytes = -1
		}
	})
	return &Store{
		client: client, bucket: cfg.Bucket, prefix: prefix, partSize: partSize, concurrency: conc,
		free: make(chan *[]byte, conc+1),
	}, nil
}

// UploadBufferBytes is the most memory the part buffers of uploads in flight take.
func (s *Store) UploadBufferBytes() int64 { return s.partSize * int64(s.concurrency+1) }

// Location is s3://bucket/prefix, never credentials or endpoint secrets.
func (s *Store) Location() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

func (s *Store) full(key string) string { return s.prefix + key }

func md5b64(b []byte) *string {
	sum := md5.Sum(b)
	return aws.String(base64.StdEncoding.EncodeToString(sum[:]))
}

// castagnoli is the CRC32C table; Go computes it with the CPU's CRC instructions (>10 GB/s).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the x-amz-checksum-crc32c value of b (the big-endian CRC, base64): the request checksum
// uploads carry, which the server verifies; MD5 (Content-MD5) cost ~1.5 s of CPU per GiB uploaded.
func CRC32C(b []byte) *string {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], crc32.Checksum(b, castagnoli))
	return aws.String(base64.StdEncoding.EncodeToString(s[:]))
}

// CRCRefused says a server refused a CRC32C checksum header itself (not a mismatch): a 501 (R2
// answered that to CRC headers before it supported them), or a 400 other than BadDigest whose
// message names the header. Callers fall back to Content-MD5 or SHA-256.
func CRCRefused(err error) bool {
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var sc interface{ HTTPStatusCode() int }
	status := 0
	if errors.As(err, &sc) {
		status = sc.HTTPStatusCode()
	}
	switch {
	case code == "NotImplemented" || status == http.StatusNotImplemented:
		return true
	case status == http.StatusBadRequest && code != "BadDigest" && ae != nil:
		m := strings.ToLower(ae.ErrorMessage())
		return strings.Contains(m, "crc32c") || strings.Contains(m, "checksum algorithm")
	}
	return false
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

func (s *Store) getBuf() *[]byte {
	select {
	case b := <-s.free:
		return b
	default:
		b := make([]byte, s.partSize)
		return &b
	}
}

func (s *Store) putBuf(b *[]byte) {
	select {
	case s.free <- b:
	default: // more buffers than one Put needs (concurrent Puts): let GC have it
	}
}

// Put streams r to key; see the package comment for how.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b1 := s.getBuf()
	n1, eof, err := fill(ctx, r, *b1)
	if err != nil {
		s.putBuf(b1)
		return fmt.Errorf("put %s: %w", key, err)
	}
	if eof {
		defer s.putBuf(b1)
		return s.putSingle(ctx, key, (*b1)[:n1], opts)
	}
	b2 := s.getBuf()
	n2, eof, err := fill(ctx, r, *b2)
	if err != nil {
		s.putBuf(b1)
		s.putBuf(b2)
		return fmt.Errorf("put %s: %w", key, err)
	}
	if n2 == 0 && eof { // exactly one part's worth
		s.putBuf(b2)
		defer s.putBuf(b1)
		return s.putSingle(ctx, key, (*b1)[:n1], opts)
	}
	return s.putMultipart(ctx, key, b1, b2, n2, eof, r, opts)
}

func (s *Store) putSingle(ctx context.Context, key string, data []byte, opts store.PutOptions) error {
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.full(key)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	var sent atomic.Int32 // requests that reached the wire, SDK retries included
	apiOpts := []func(*awss3.Options){awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware, countAttempts(&sent))}
	if opts.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// One checksum only: R2 refuses a request with two.
		crc := !s.noCRC.Load()
		if crc {
			in.ChecksumCRC32C, in.ContentMD5 = CRC32C(data), nil
		} else {
			in.ChecksumCRC32C, in.ContentMD5 = nil, md5b64(data)
		}
		in.Body = bytes.NewReader(data)
		before := sent.Load()
		_, err := s.client.PutObject(ctx, in, apiOpts...)
		if crc && CRCRefused(err) {
			sent.Store(before) // refused outright: that request stored nothing
			s.noCRC.Store(true)
			continue
		}
		// AWS answers 409 ConditionalRequestConflict when a concurrent conditional write is in
		// flight; retrying then yields the real answer (200 or 412).
		if err != nil && errorCode(err) == "ConditionalRequestConflict" && attempt < 5 {
			select {
			case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if opts.IfNotExists && err != nil && sent.Load() > 1 && isPreconditionFailed(err) {
			// An earlier request of ours may have stored the object and lost its answer: identical
			// content there is our own create, not someone else's.
			same, cerr := s.sameContent(ctx, key, data)
			if cerr != nil {
				return fmt.Errorf("put %s: a retried conditional create met 412 and the object could not be read back to tell whether it is ours: %w", key, cerr)
			}
			if same {
				return nil
			}
		}
		return mapErr("put", key, err)
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

func isPreconditionFailed(err error) bool {
	return httpStatus(err) == http.StatusPreconditionFailed || errorCode(err) == "PreconditionFailed"
}

// sameContent reports whether key holds exactly data (size, then SHA-256 of a full read).
func (s *Store) sameContent(ctx context.Context, key string, data []byte) (bool, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return false, err
	}
	if info.Size != int64(len(data)) {
		return false, nil
	}
	rc, err := s.Open(ctx, key, 0, -1)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return false, err
	}
	want := sha256.Sum256(data)
	return n == int64(len(data)) && bytes.Equal(h.Sum(nil), want[:]), nil
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
func (s *Store) completedIsOurs(ctx context.Context, key string, parts []partResult, size int64) bool {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToInt64(out.ContentLength) != size {
		return false
	}
	if e := multipartETag(parts); e != "" && strings.Trim(aws.ToString(out.ETag), `"`) == e {
		return true
	}
	if c := compositeCRC32C(parts); c != "" && aws.ToString(out.ChecksumCRC32C) == c {
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

// putMultipart uploads b1 (full), b2 (n2 bytes) and the rest of r as parts of one upload. It owns
// both buffers and returns each to the free list as soon as its part is uploaded.
func (s *Store) putMultipart(ctx context.Context, key string, b1, b2 *[]byte, n2 int, eof bool, r io.Reader, opts store.PutOptions) (retErr error) {
	full := s.full(key)
	if opts.IfNotExists { // fail fast before uploading gigabytes; Complete's If-None-Match is what is atomic
		if _, err := s.Stat(ctx, key); err == nil {
			s.putBuf(b1)
			s.putBuf(b2)
			return fmt.Errorf("put %s: %w", key, store.ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			s.putBuf(b1)
			s.putBuf(b2)
			return err
		}
	}
	// Parts carry CRC32C (declared here) unless the server refused it before. A refusal here, or on
	// the first part while no CRC32C part has been accepted yet, is remembered and the upload starts
	// over with Content-MD5.
	crc := !s.noCRC.Load()
	create := func() (*awss3.CreateMultipartUploadOutput, error) {
		cin := &awss3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(full)}
		if crc {
			cin.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
		}
		return s.client.CreateMultipartUpload(ctx, cin)
	}
	created, err := create()
	if crc && CRCRefused(err) {
		s.noCRC.Store(true)
		crc = false
		created, err = create()
	}
	if err != nil {
		s.putBuf(b1)
		s.putBuf(b2)
		return mapErr("put", key, err)
	}
	uploadID := created.UploadId
	defer func() {
		if retErr != nil && uploadID != nil {
			AbortUpload(ctx, s.client, s.bucket, full, uploadID)
		}
	}()
	sendPart := func(ctx context.Context, num int32, data []byte) (partResult, error) {
		in := &awss3.UploadPartInput{
			Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: uploadID,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		}
		if crc {
			in.ChecksumCRC32C = CRC32C(data)
		} else {
			in.ContentMD5 = md5b64(data)
		}
		out, err := s.client.UploadPart(ctx, in, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
		if err != nil {
			return partResult{}, err
		}
		if crc {
			s.crcParts.Store(true)
		}
		return partResult{num, out.ETag, in.ChecksumCRC32C, int64(len(data))}, nil
	}
	var first *partResult // part 1 when it was sent alone
	if crc && !s.crcParts.Load() {
		p, err := sendPart(ctx, 1, *b1)
		if CRCRefused(err) {
			AbortUpload(ctx, s.client, s.bucket, full, uploadID)
			s.noCRC.Store(true)
			crc = false
			if created, err = create(); err == nil {
				uploadID = created.UploadId
				p, err = sendPart(ctx, 1, *b1)
			} else {
				uploadID = nil // nothing left to abort
			}
		}
		s.putBuf(b1)
		if err != nil {
			s.putBuf(b2)
			if uploadID == nil {
				return mapErr("put", key, err)
			}
			return mapErr("put part 1 of", key, err)
		}
		first = &p
	}

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		parts    []partResult
		wg       sync.WaitGroup
		sem      = make(chan struct{}, s.concurrency)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	// upload takes ownership of buf (returned to the pool when the part is done). The buffer
	// being filled plus at most Concurrency parts in flight bound the memory.
	upload := func(num int32, buf *[]byte, n int) bool {
		select {
		case sem <- struct{}{}:
		case <-uctx.Done():
			s.putBuf(buf)
			return false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer s.putBuf(buf)
			p, err := sendPart(uctx, num, (*buf)[:n])
			if err != nil {
				if crc && CRCRefused(err) {
					s.noCRC.Store(true)
				}
				fail(mapErr(fmt.Sprintf("put part %d of", num), key, err))
				return
			}
			mu.Lock()
			parts = append(parts, p)
			mu.Unlock()
		}()
		return true
	}

	num := int32(1)
	ok := true
	if first != nil {
		parts = append(parts, *first)
	} else {
		ok = upload(num, b1, len(*b1))
	}
	if ok && n2 > 0 {
		num++
		ok = upload(num, b2, n2)
	} else {
		s.putBuf(b2)
	}
	for ok && !eof {
		if num >= MaxParts {
			fail(fmt.Errorf("put %s: %w (%d parts of %d bytes)", key, ErrTooLarge, MaxParts, s.partSize))
			break
		}
		buf := s.getBuf()
		var n int
		n, eof, err = fill(uctx, r, *buf)
		if err != nil {
			s.putBuf(buf)
			if ctx.Err() != nil {
				err = ctx.Err() // the caller's cancellation, not our own after a failed part
			}
			fail(fmt.Errorf("put %s: %w", key, err))
			break
		}
		if n == 0 {
			s.putBuf(buf)
			break
		}
		num++
		ok = upload(num, buf, n)
	}
	wg.Wait()
	mu.Lock()
	err = firstErr
	mu.Unlock()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	slices.SortFunc(parts, func(a, b partResult) int { return int(a.num - b.num) })
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.num), ETag: p.etag, ChecksumCRC32C: p.crc}
	}
	in := &awss3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}
	if opts.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	var sent atomic.Int32
	if _, err := s.client.CompleteMultipartUpload(ctx, in, awss3.WithAPIOptions(countAttempts(&sent))); err != nil {
		if sent.Load() > 1 && (isPreconditionFailed(err) || errorCode(err) == "NoSuchUpload") {
			// The first Complete may have landed and lost its answer.
			var size int64
			for _, p := range parts {
				size += p.size
			}
			if s.completedIsOurs(ctx, key, parts, size) {
				uploadID = nil // completed: nothing to abort
				return nil
			}
		}
		return mapErr("put", key, err)
	}
	return nil
}

// AbortUpload aborts a multipart upload (even after ctx ended, for up to 30 s). A part whose request
// was cancelled may still be landing on the server as the abort arrives and bring the upload back
// (AWS documents calling abort again), so it aborts until ListParts says the upload is gone, a few
// times at most.
func AbortUpload(ctx context.Context, client *awss3.Client, bucket, key string, uploadID *string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		_, _ = client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: uploadID})
		if _, err := client.ListParts(actx, &awss3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: uploadID}); err != nil {
			return // gone (NoSuchUpload), or the server cannot say: nothing more to do here
		}
		select {
		case <-time.After(time.Duration(i+1) * 100 * time.Millisecond):
		case <-actx.Done():
			return
		}
	}
}

// Open reads a byte range with a ranged GET.
func (s *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, _, err := s.OpenPinned(ctx, key, offset, length, "")
	return rc, err
}

var _ store.PinnedOpener = (*Store)(nil)

// OpenPinned reads a byte range and returns the object's ETag; with version set, the GET carries
// If-Match: version, so a resumed read (pkg/store/retry) never continues into another object.
func (s *Store) OpenPinned(ctx context.Context, key string, offset, length int64, version string) (io.ReadCloser, string, error) {
	if err := store.ValidateKey(key); err != nil {
		return nil, "", err
	}
	if offset < 0 {
		return nil, "", fmt.Errorf("open %s: negative offset %d", key, offset)
	}
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, "", err
		}
		return io.NopCloser(bytes.NewReader(nil)), version, nil
	}
	in := &awss3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))}
	if version != "" {
		in.IfMatch = aws.String(version)
	}
	if offset > 0 || length > 0 {
		rng := fmt.Sprintf("bytes=%d-", offset)
		if length > 0 {
			rng += fmt.Sprint(offset + length - 1)
		}
		in.Range = aws.String(rng)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable || errorCode(err) == "InvalidRange" {
			// The object exists but the range starts at or past its end (or it is empty).
			return io.NopCloser(bytes.NewReader(nil)), version, nil
		}
		if version != "" && (httpStatus(err) == http.StatusPreconditionFailed || errorCode(err) == "PreconditionFailed") {
			return nil, "", fmt.Errorf("open %s at byte %d: %w (ETag is no longer %s): %w", key, offset, store.ErrChanged, version, err)
		}
		return nil, "", mapErr("open", key, err)
	}
	return out.Body, aws.ToString(out.ETag), nil
}

// Stat uses HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		return store.ObjectInfo{}, mapErr("stat", key, err)
	}
	return store.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List pages through ListObjectsV2; S3 returns keys in byte order, as the contract requires.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if err := store.ValidatePrefix(prefix); err != nil {
		return err
	}
	p := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket), Prefix: aws.String(s.full(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr("list", prefix, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if err := fn(store.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete checks the object exists (S3 deletes of missing keys succeed silently) and deletes it.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	return mapErr("delete", key, err)
}

func httpStatus(err error) int {
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) {
		return sc.HTTPStatusCode()
	}
	return 0
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// mapErr adds the store sentinel while keeping the SDK error (and its HTTP status) in the chain.
func mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	code, status := errorCode(err), httpStatus(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: %w: %w", op, key, ErrNoSuchBucket, err)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w: %w", op, key, store.ErrNotFound, err)
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		return fmt.Errorf("%s %s: %w: %w", op, key, store.ErrExists, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// Package r2 backs up Cloudflare R2 buckets (or any S3-compatible bucket) into a repository and
// restores them: one catalogue item per object, objects fetched in parallel and streamed into the
// archive writer, unchanged objects reused from the parent snapshot through an encrypted keyed-hash
// index that a write-only backup host can read, and restores to a bucket or a directory that read only
// the byte ranges of the objects asked for. docs/R2.md describes it for users, docs/FORMAT.md the
// item names and the index format.
package r2

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	s3store "github.com/cfbackup/cfbackup/pkg/store/s3"
)

// Component is the component name in manifests and on the command line.
const Component = "r2"

// Sentinel errors callers branch on (the CLI maps them to exit codes).
var (
	// ErrNoSuchBucket: the bucket does not exist at the endpoint.
	ErrNoSuchBucket = errclass.New(errclass.NotFound, "bucket does not exist")
	// ErrAccessDenied: the keys may not read (or write) the bucket.
	ErrAccessDenied = errclass.New(errclass.Remote, "access denied")
	// ErrConfig: endpoint or keys are missing or malformed.
	ErrConfig = errclass.New(errclass.Usage, "r2: invalid configuration")
	// ErrVanished: an object listed a moment ago is gone (deleted between listing and GET).
	ErrVanished = errclass.New(errclass.NotFound, "object deleted since it was listed")
	// ErrConflict: the restore target already holds different data under the key (--overwrite fail).
	ErrConflict = errclass.New(errclass.Refused, "target already holds different data")
	// ErrBadKey: the target cannot take the key (too long, or not representable as a file).
	ErrBadKey = errclass.New(errclass.Refused, "key not accepted by the target")
	// ErrRangeNotSatisfiable: a ranged GET started past the object's end (it shrank to zero bytes).
	ErrRangeNotSatisfiable = errors.New("requested range not satisfiable")
	// ErrChanged: the object was replaced while it was read in ranges (its ETag no longer matched).
	ErrChanged = errclass.New(errclass.Failure, "object changed while it was read")
)

// Config says how to reach the buckets. Secrets in it are never printed or logged.
type Config struct {
	// Endpoint is the S3 endpoint, https://<account>.r2.cloudflarestorage.com for R2.
	Endpoint string
	// Region defaults to "auto" on R2 and "us-east-1" elsewhere.
	Region                       string
	AccessKeyID, SecretAccessKey string
	// PartSize is the multipart part size for restores of large objects (default 8 MiB, R2 needs
	// equal parts of at least 5 MiB).
	PartSize   int64
	HTTPClient *http.Client
}

// DefaultPartSize is the restore upload part size; objects up to it are restored with one PUT.
const DefaultPartSize = 8 << 20

// Client reads and writes objects of any bucket at one endpoint.
type Client struct {
	s3       *awss3.Client
	partSize int64
	endpoint string
	// noCRC32C is set once the server refused a CRC32C checksum header: SHA-256 from then on.
	noCRC32C atomic.Bool
}

// New checks cfg and builds the client; it makes no request.
func New(cfg Config) (*Client, error) {
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("%w: no endpoint: set CFBACKUP_R2_ENDPOINT (https://ACCOUNT.r2.cloudflarestorage.com) or CLOUDFLARE_ACCOUNT_ID", ErrConfig)
	}
	if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: endpoint %q must be an http(s) URL like https://ACCOUNT.r2.cloudflarestorage.com", ErrConfig, cfg.Endpoint)
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, fmt.Errorf("%w: set CFBACKUP_R2_ACCESS_KEY_ID and CFBACKUP_R2_SECRET_ACCESS_KEY (an R2 API token's S3 credentials)", ErrConfig)
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
		if s3store.IsR2(cfg.Endpoint) {
			region = "auto"
		}
	}
	ps := cfg.PartSize
	if ps == 0 {
		ps = DefaultPartSize
	}
	if ps < 5<<20 {
		return nil, fmt.Errorf("%w: part size %d is below 5 MiB", ErrConfig, ps)
	}
	opts := awss3.Options{
		BaseEndpoint: aws.String(cfg.Endpoint),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		UsePathStyle: true,
		// R2 rejects aws-chunked bodies and trailing checksums: only what an operation requires.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		// No "Expect: 100-continue" on PUTs over 2 MB: R2 does not implement it (docs/CLOUDFLARE_FACTS.md §3.3),
		// so every such PUT waited for the client's continue timeout before sending its body.
		ContinueHeaderThresholdBytes: -1,
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	return &Client{s3: awss3.New(opts), partSize: ps, endpoint: cfg.Endpoint}, nil
}

// Object is one listed object.
type Object struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}

// ListBuckets names every bucket the keys can see.
func (c *Client) ListBuckets(ctx context.Context) ([]string, error) {
	out, err := c.s3.ListBuckets(ctx, &awss3.ListBucketsInput{})
	if err != nil {
		return nil, mapErr("list buckets", "", err)
	}
	var names []string
	for _, b := range out.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	return names, nil
}

// List calls fn for every object under prefix, in key (byte) order.
func (c *Client) List(ctx context.Context, bucket, prefix string, fn func(Object) error) error {
	p := awss3.NewListObjectsV2Paginator(c.s3, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr("list", bucket, err)
		}
		for _, o := range page.Contents {
			if err := fn(Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag), LastModified: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get opens an object's body and returns its metadata.
func (c *Client) Get(ctx context.Context, bucket, key string) (io.ReadCloser, int64, manifest.ObjectMeta, error) {
	out, err := c.s3.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, 0, manifest.ObjectMeta{}, mapErr("get", bucket+"/"+key, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), metaOf(key, out), nil
}

// GetRange reads n bytes of key from off, only while the object's ETag is etag (unless etag is
// empty). total is the object's size (from Content-Range); ranged is false when the server ignored
// the Range header and body is the whole object. A range past the end of an object that shrank to
// zero bytes is ErrRangeNotSatisfiable.
func (c *Client) GetRange(ctx context.Context, bucket, key string, off, n int64, etag string) (body io.ReadCloser, total int64, m manifest.ObjectMeta, ranged bool, err error) {
	in := &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))}
	if etag != "" {
		in.IfMatch = aws.String(etag)
	}
	out, err := c.s3.GetObject(ctx, in)
	if err != nil {
		var sc interface{ HTTPStatusCode() int }
		if errors.As(err, &sc) && sc.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			return nil, 0, manifest.ObjectMeta{}, false, fmt.Errorf("get %s/%s: %w: %w", bucket, key, ErrRangeNotSatisfiable, err)
		}
		return nil, 0, manifest.ObjectMeta{}, false, mapErr("get", bucket+"/"+key, err)
	}
	cr := aws.ToString(out.ContentRange) // "bytes 0-4194303/12345678"
	if cr == "" {
		return out.Body, aws.ToInt64(out.ContentLength), metaOf(key, out), false, nil
	}
	var first, last int64
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || first != off || last-first+1 != aws.ToInt64(out.ContentLength) {
		out.Body.Close()
		return nil, 0, manifest.ObjectMeta{}, false, fmt.Errorf("get %s/%s: unexpected Content-Range %q for bytes %d-%d", bucket, key, cr, off, off+n-1)
	}
	return out.Body, total, metaOf(key, out), true, nil
}

func metaOf(key string, out *awss3.GetObjectOutput) manifest.ObjectMeta {
	m := manifest.ObjectMeta{
		Key: key, ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified),
		ContentType: aws.ToString(out.ContentType), CacheControl: aws.ToString(out.CacheControl),
		ContentEncoding: aws.ToString(out.ContentEncoding), ContentDisposition: aws.ToString(out.ContentDisposition),
		ContentLanguage: aws.ToString(out.ContentLanguage), Expires: aws.ToString(out.ExpiresString),
	}
	if len(out.Metadata) > 0 {
		m.Metadata = out.Metadata
	}
	return m
}

// Head returns an object's size and ETag; found is false when there is none.
func (c *Client) Head(ctx context.Context, bucket, key string) (size int64, etag string, found bool, err error) {
	out, err := c.s3.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		err = mapErr("head", bucket+"/"+key, err)
		if errors.Is(err, ErrVanished) {
			return 0, "", false, nil
		}
		return 0, "", false, err
	}
	return aws.ToInt64(out.ContentLength), aws.ToString(out.ETag), true, nil
}

// Put uploads size bytes from r under key with the object's metadata: one PUT up to the part size,
// otherwise a multipart upload of equal parts (R2 requires them), one part buffer at a time. r must
// check its content at EOF (a restore's item reader checks the catalogue's SHA-256 there): Put reads
// to EOF before it sends the last byte, so a body that fails the check is never committed. Every
// request body also carries a checksum the server verifies, so it rejects a body corrupted on the
// way: a one-PUT object sends x-amz-checksum-crc32c (hardware CRC32C, nearly free on both sides;
// x-amz-checksum-sha256 made the server hash every restored byte a second time after MD5 for the
// ETag), falling back to SHA-256 for good if a server refuses the CRC32C header; multipart parts send
// CRC32C too (Content-MD5 after such a refusal). If r fails the multipart upload is aborted and
// nothing appears under key.
func (c *Client) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, m manifest.ObjectMeta, buf []byte) error {
	if int64(cap(buf)) < min(size, c.partSize) {
		buf = make([]byte, min(size, c.partSize))
	}
	if size <= c.partSize {
		b := buf[:size]
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		// The reader checks the item's SHA-256 at EOF: reach it before anything is written.
		if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			if err == nil {
				err = fmt.Errorf("object %s is longer than its recorded %d bytes", key, size)
			}
			return err
		}
		return c.PutBytes(ctx, bucket, key, b, m)
	}
	// Parts carry x-amz-checksum-crc32c (the upload declares CRC32C) unless the server refused CRC32C;
	// then Content-MD5. A refusal of the first part starts the upload over with MD5.
	crc := !c.noCRC32C.Load()
	create := func() (*string, error) {
		cin := &awss3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)}
		setCreateMeta(cin, m)
		if crc {
			cin.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
		}
		out, err := c.s3.CreateMultipartUpload(ctx, cin)
		if err != nil {
			return nil, err
		}
		return out.UploadId, nil
	}
	id, err := create()
	if crc && s3store.CRCRefused(err) {
		c.noCRC32C.Store(true)
		crc = false
		id, err = create()
	}
	if err != nil {
		return mapErr("put", bucket+"/"+key, err)
	}
	abort := func() { s3store.AbortUpload(ctx, c.s3, bucket, key, id) }
	var parts []types.CompletedPart
	b := buf[:c.partSize]
	for num, left := int32(1), size; left > 0; num++ {
		n := min(left, c.partSize)
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			abort()
			return err
		}
		left -= n
		if left == 0 { // reach the reader's EOF (and its SHA-256 check) before completing
			if k, err := r.Read(make([]byte, 1)); k != 0 || err != io.EOF {
				abort()
				if err == nil {
					err = fmt.Errorf("object %s is longer than its recorded %d bytes", key, size)
				}
				return err
			}
		}
		part := types.CompletedPart{PartNumber: aws.Int32(num)}
		upload := func() (*awss3.UploadPartOutput, error) {
			in := &awss3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id,
				PartNumber: aws.Int32(num), Body: bytes.NewReader(b[:n]), ContentLength: aws.Int64(n)}
			if crc {
				in.ChecksumCRC32C = s3store.CRC32C(b[:n])
				part.ChecksumCRC32C = in.ChecksumCRC32C
			} else {
				in.ContentMD5 = md5b64(b[:n])
				part.ChecksumCRC32C = nil
			}
			return c.s3.UploadPart(ctx, in, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
		}
		out, err := upload()
		if err != nil && crc && num == 1 && s3store.CRCRefused(err) {
			abort()
			c.noCRC32C.Store(true)
			crc = false
			if id, err = create(); err == nil {
				out, err = upload()
			}
		}
		if err != nil {
			abort()
			return mapErr("put", bucket+"/"+key, err)
		}
		part.ETag = out.ETag
		parts = append(parts, part)
	}
	_, err = c.s3.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		abort()
		return mapErr("put", bucket+"/"+key, err)
	}
	return nil
}

// PutBytes uploads b under key with one PUT (b must not exceed the part size), with the checksum
// header Put describes.
func (c *Client) PutBytes(ctx context.Context, bucket, key string, b []byte, m manifest.ObjectMeta) error {
	put := func(crc bool) error {
		in := &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b),
			ContentLength: aws.Int64(int64(len(b)))}
		// One checksum only: R2 refuses a request with two (docs/CLOUDFLARE_FACTS.md §3.4).
		if crc {
			in.ChecksumCRC32C = s3store.CRC32C(b)
		} else {
			sum := sha256.Sum256(b)
			in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
		}
		setPutMeta(in, m)
		_, err := c.s3.PutObject(ctx, in, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
		return err
	}
	if !c.noCRC32C.Load() {
		err := put(true)
		if !s3store.CRCRefused(err) {
			return mapErr("put", bucket+"/"+key, err)
		}
		c.noCRC32C.Store(true)
	}
	return mapErr("put", bucket+"/"+key, put(false))
}

func setPutMeta(in *awss3.PutObjectInput, m manifest.ObjectMeta) {
	in.ContentType, in.CacheControl, in.ContentEncoding = strp(m.ContentType), strp(m.CacheControl), strp(m.ContentEncoding)
	in.ContentDisposition, in.ContentLanguage, in.Metadata = strp(m.ContentDisposition), strp(m.ContentLanguage), m.Metadata
	if t, err := http.ParseTime(m.Expires); err == nil {
		in.Expires = &t
	}
}

func setCreateMeta(in *awss3.CreateMultipartUploadInput, m manifest.ObjectMeta) {
	in.ContentType, in.CacheControl, in.ContentEncoding = strp(m.ContentType), strp(m.CacheControl), strp(m.ContentEncoding)
	in.ContentDisposition, in.ContentLanguage, in.Metadata = strp(m.ContentDisposition), strp(m.ContentLanguage), m.Metadata
	if t, err := http.ParseTime(m.Expires); err == nil {
		in.Expires = &t
	}
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func md5b64(b []byte) *string {
	sum := md5.Sum(b)
	return aws.String(base64.StdEncoding.EncodeToString(sum[:]))
}

// mapErr adds this package's sentinels, keeping the SDK error in the chain.
func mapErr(op, what string, err error) error {
	if err == nil {
		return nil
	}
	var code string
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	status := 0
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) {
		status = sc.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: %w: %w", op, what, ErrNoSuchBucket, err)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || status == http.StatusForbidden:
		return fmt.Errorf("%s %s: %w (check the R2 keys and the token's bucket permissions): %w", op, what, ErrAccessDenied, err)
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		return fmt.Errorf("%s %s: %w: %w", op, what, ErrChanged, err)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w: %w", op, what, ErrVanished, err)
	case code == "KeyTooLongError" || code == "InvalidObjectName" || code == "InvalidArgument" && strings.Contains(err.Error(), "key"):
		return fmt.Errorf("%s %s: %w: %w", op, what, ErrBadKey, err)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

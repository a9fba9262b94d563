// Package s3 stores a repository in an S3-compatible bucket (Cloudflare R2, AWS S3, MinIO, versitygw).
//
// The client setup and every upload are pkg/s3api's (shared with the R2 component's restores):
// streamed multipart uploads of equal parts from a bounded buffer pool, a CRC32C checksum on every
// request body (Content-MD5 once a server refused it), failed uploads aborted until gone, and
// conditional creates with If-None-Match: *. This package adds the key prefix, the store contract's
// errors, reads, listings, deletes and Object Lock.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Limits and defaults of the multipart upload (pkg/s3api's, named here for the store's callers).
const (
	DefaultPartSize    = s3api.DefaultPartSize
	MinPartSize        = s3api.MinPartSize
	MaxPartSize        = s3api.MaxPartSize
	MaxParts           = s3api.MaxParts
	DefaultConcurrency = s3api.DefaultConcurrency
	R2Concurrency      = s3api.R2Concurrency
)

// Sentinel errors of this package.
var (
	// ErrConfig: the Config cannot work; the message names the field.
	ErrConfig = errclass.New(errclass.Usage, "s3 store: invalid configuration")
	// ErrNoSuchBucket: the bucket does not exist (kept apart from ErrNotFound so a typo in the
	// bucket name never looks like an empty repository).
	ErrNoSuchBucket = errclass.New(errclass.Repository, "s3 bucket does not exist")
	// ErrTooLarge: the object needs more than MaxParts parts of PartSize.
	ErrTooLarge = s3api.ErrTooLarge
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
	api    *s3api.Client
	client *awss3.Client
	bucket string
	prefix string // "" or ends in "/"
}

var _ store.Store = (*Store)(nil)

// IsR2 reports whether endpoint is a Cloudflare R2 S3 endpoint, whose quirks the store adapts to.
func IsR2(endpoint string) bool { return s3api.IsR2(endpoint) }

// New checks cfg and builds the client; it makes no request, so a missing bucket surfaces on first use.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: bucket name is empty", ErrConfig)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := store.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("%w: prefix: %w", ErrConfig, err)
		}
		prefix += "/"
	}
	api, err := s3api.New(ctx, s3api.Config{
		Endpoint: cfg.Endpoint, Region: cfg.Region,
		AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, SessionToken: cfg.SessionToken,
		PathStyle: cfg.PathStyle, PartSize: cfg.PartSize, Concurrency: cfg.Concurrency, HTTPClient: cfg.HTTPClient,
	})
	if errors.Is(err, s3api.ErrConfig) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	return &Store{api: api, client: api.API(), bucket: cfg.Bucket, prefix: prefix}, nil
}

// UploadBufferBytes is the most memory the part buffers of uploads in flight take.
func (s *Store) UploadBufferBytes() int64 { return s.api.UploadBufferBytes() }

// Location is s3://bucket/prefix, never credentials or endpoint secrets.
func (s *Store) Location() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

func (s *Store) full(key string) string { return s.prefix + key }

// Put streams r to key through pkg/s3api (see the package comment).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	err := s.api.Put(ctx, s.bucket, s.full(key), r, s3api.PutOptions{IfNotExists: opts.IfNotExists, StorageClass: opts.StorageClass})
	if errors.Is(err, s3api.ErrExists) {
		return fmt.Errorf("put %s: %w", key, store.ErrExists)
	}
	return mapErr("put", key, err)
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
		if aerr := s.archivedErr("open", key, err); aerr != nil {
			return nil, "", aerr
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

func httpStatus(err error) int { return s3api.HTTPStatus(err) }

func errorCode(err error) string { return s3api.ErrorCode(err) }

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

// Package open turns the repository location a user types (a path, file://PATH or s3://BUCKET/PREFIX)
// into a ready store, wrapped in the retry decorator, so the CLI has one place that knows the
// location syntax and every command gets the same stacking of decorators.
package open

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

// ErrLocation: the location string cannot name a store; the message says what to write instead.
var ErrLocation = errclass.New(errclass.Usage, "invalid repository location")

const syntax = "use a directory path, file://PATH or s3://BUCKET[/PREFIX]"

// Options carry what a location string cannot: S3 endpoint and credentials (the CLI fills them
// from CFBACKUP_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), tuning, and retry.
type Options struct {
	S3Endpoint      string
	S3Region        string
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	PathStyle       bool
	PartSize        int64
	Concurrency     int
	HTTPClient      *http.Client
	Retry           retry.Options
}

// Open parses location and returns the store behind it, wrapped in retry.
func Open(ctx context.Context, location string, opts Options) (store.Store, error) {
	s, err := openRaw(ctx, location, opts)
	if err != nil {
		return nil, err
	}
	return retry.New(s, opts.Retry), nil
}

func openRaw(ctx context.Context, location string, opts Options) (store.Store, error) {
	loc := strings.TrimSpace(location)
	if loc == "" {
		return nil, fmt.Errorf("%w: empty location: %s", ErrLocation, syntax)
	}
	scheme, rest, hasScheme := strings.Cut(loc, "://")
	if !hasScheme {
		return local.New(loc)
	}
	switch strings.ToLower(scheme) {
	case "file":
		if rest == "" {
			return nil, fmt.Errorf("%w: %q has no path: write file:///absolute/path or file://relative/path", ErrLocation, location)
		}
		return local.New(rest)
	case "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, fmt.Errorf("%w: %q has no bucket name: write s3://BUCKET[/PREFIX]", ErrLocation, location)
		}
		s, err := s3.New(ctx, s3.Config{
			Bucket: bucket, Prefix: prefix, Endpoint: opts.S3Endpoint, Region: opts.S3Region,
			AccessKeyID: opts.AccessKeyID, SecretAccessKey: opts.SecretAccessKey, SessionToken: opts.SessionToken,
			PathStyle: opts.PathStyle, PartSize: opts.PartSize, Concurrency: opts.Concurrency, HTTPClient: opts.HTTPClient,
		})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", location, err)
		}
		return s, nil
	case "r2":
		return nil, fmt.Errorf("%w: scheme r2:// is not supported: write s3://BUCKET[/PREFIX] and set CFBACKUP_S3_ENDPOINT=https://ACCOUNT_ID.r2.cloudflarestorage.com", ErrLocation)
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q in %q: %s", ErrLocation, scheme, location, syntax)
	}
}

package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cfbackup/cfbackup/pkg/store"
)

var _ store.ObjectLocker = (*Store)(nil)

// ObjectLockEnabled reads the bucket's Object Lock configuration. Buckets without it (and R2, whose
// GetObjectLockConfiguration is a dummy) report false.
func (s *Store) ObjectLockEnabled(ctx context.Context) (bool, error) {
	out, err := s.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		code := errorCode(err)
		if code == "ObjectLockConfigurationNotFoundError" || code == "NotImplemented" || code == "InvalidRequest" ||
			httpStatus(err) == http.StatusNotFound || httpStatus(err) == http.StatusNotImplemented {
			return false, nil
		}
		return false, mapErr("get object lock configuration of", s.bucket, err)
	}
	return out.ObjectLockConfiguration != nil && out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled, nil
}

// SetLegalHold puts the legal hold of key's current version ON or OFF.
func (s *Store) SetLegalHold(ctx context.Context, key string, on bool) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	st := types.ObjectLockLegalHoldStatusOff
	if on {
		st = types.ObjectLockLegalHoldStatusOn
	}
	_, err := s.client.PutObjectLegalHold(ctx, &awss3.PutObjectLegalHoldInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)),
		LegalHold:         &types.ObjectLockLegalHold{Status: st},
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	return mapErr("set legal hold on", key, err)
}

// LegalHold reads the legal hold of key's current version.
func (s *Store) LegalHold(ctx context.Context, key string) (bool, error) {
	out, err := s.client.GetObjectLegalHold(ctx, &awss3.GetObjectLegalHoldInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		if errorCode(err) == "NoSuchObjectLockConfiguration" {
			return false, nil
		}
		return false, mapErr("get legal hold of", key, err)
	}
	return out.LegalHold != nil && out.LegalHold.Status == types.ObjectLockLegalHoldStatusOn, nil
}

// SetRetention sets the retention of key's current version (GOVERNANCE or COMPLIANCE until a date).
func (s *Store) SetRetention(ctx context.Context, key, mode string, until time.Time) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	m, err := retentionMode(mode)
	if err != nil {
		return err
	}
	_, err = s.client.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)),
		Retention:         &types.ObjectLockRetention{Mode: m, RetainUntilDate: aws.Time(until.UTC())},
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	return mapLockErr("set retention on", key, err)
}

// Retention reads the retention of key's current version.
func (s *Store) Retention(ctx context.Context, key string) (string, time.Time, error) {
	out, err := s.client.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		if errorCode(err) == "NoSuchObjectLockConfiguration" {
			return "", time.Time{}, nil
		}
		return "", time.Time{}, mapErr("get retention of", key, err)
	}
	if out.Retention == nil {
		return "", time.Time{}, nil
	}
	return string(out.Retention.Mode), aws.ToTime(out.Retention.RetainUntilDate), nil
}

// DeleteVersions deletes every version and delete marker of exactly key. In a versioned (Object Lock)
// bucket a plain DELETE only adds a delete marker and keeps the bytes; prune needs them gone.
func (s *Store) DeleteVersions(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	full := s.full(key)
	type ver struct{ id *string }
	var vers []ver
	p := awss3.NewListObjectVersionsPaginator(s.client, &awss3.ListObjectVersionsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(full)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr("list versions of", key, err)
		}
		for _, v := range page.Versions {
			if aws.ToString(v.Key) == full {
				vers = append(vers, ver{v.VersionId})
			}
		}
		for _, d := range page.DeleteMarkers {
			if aws.ToString(d.Key) == full {
				vers = append(vers, ver{d.VersionId})
			}
		}
	}
	if len(vers) == 0 {
		return fmt.Errorf("delete %s: %w", key, store.ErrNotFound)
	}
	var errs []error
	for _, v := range vers {
		_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(full), VersionId: v.id})
		if err != nil {
			errs = append(errs, mapLockErr("delete version "+aws.ToString(v.id)+" of", key, err))
		}
	}
	return errors.Join(errs...)
}

func retentionMode(mode string) (types.ObjectLockRetentionMode, error) {
	switch strings.ToUpper(mode) {
	case store.RetentionGovernance:
		return types.ObjectLockRetentionModeGovernance, nil
	case store.RetentionCompliance:
		return types.ObjectLockRetentionModeCompliance, nil
	}
	return "", fmt.Errorf("%w: retention mode %q: use governance or compliance", ErrConfig, mode)
}

// mapLockErr classifies a refusal because of Object Lock (AWS, versitygw and moto answer 403
// AccessDenied, MinIO 400 InvalidRequest) as store.ErrObjectLocked.
func mapLockErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	code, status := errorCode(err), httpStatus(err)
	if (status == http.StatusForbidden && code == "AccessDenied") || (status == http.StatusBadRequest && code == "InvalidRequest") {
		return fmt.Errorf("%s %s: %w: %w", op, key, store.ErrObjectLocked, err)
	}
	return mapErr(op, key, err)
}

package s3

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/store"
)

var _ store.DeleteProber = (*Store)(nil)

// ProbeDelete sends DeleteObject for key without the Stat that Delete makes first, so the server
// says whether these credentials may delete there (S3 answers 204 for a missing key it may delete,
// 403 AccessDenied otherwise). The caller picks a key that does not exist; in a versioned bucket
// the server records a delete marker for it, which hides nothing.
func (s *Store) ProbeDelete(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	return mapErr("delete", key, err)
}

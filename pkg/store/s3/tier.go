package s3

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cfbackup/cfbackup/pkg/store"
)

var _ store.Tierer = (*Store)(nil)

// ClassMetadata is the x-amz-meta-* key in which SetStorageClass records the class it moved an object
// to: a copy onto itself must change something the server keeps, and servers without storage classes
// (versitygw) keep only metadata; it also tells a later run the move is done.
const ClassMetadata = "cfbackup-storage-class"

// SetStorageClass copies key onto itself with class (server-side; AWS S3 and R2 change the class in
// place). Metadata is replaced by ClassMetadata alone: segments carry no other metadata. An object in
// an archive class cannot be copied before it is restored (ErrArchived).
func (s *Store) SetStorageClass(ctx context.Context, key, class string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	full := s.full(key)
	_, err := s.client.CopyObject(ctx, &awss3.CopyObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(full),
		CopySource:        aws.String(s.bucket + "/" + url.PathEscape(full)),
		StorageClass:      types.StorageClass(class),
		MetadataDirective: types.MetadataDirectiveReplace,
		Metadata:          map[string]string{ClassMetadata: class},
	})
	if aerr := s.archivedErr("set storage class of", key, err); aerr != nil {
		return aerr
	}
	return mapErr("set storage class of", key, err)
}

// StorageClass reads key's class with HeadObject: AWS omits the header for STANDARD.
func (s *Store) StorageClass(ctx context.Context, key string) (string, string, error) {
	if err := store.ValidateKey(key); err != nil {
		return "", "", err
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		return "", "", mapErr("stat", key, err)
	}
	server := string(out.StorageClass)
	if server == "" {
		server = store.ClassStandard
	}
	return server, out.Metadata[ClassMetadata], nil
}

// archivedErr turns S3's 403 InvalidObjectState (a GET of an object in GLACIER or DEEP_ARCHIVE that
// was not restored) into store.ErrArchived with the class and the fix; nil for other errors.
func (s *Store) archivedErr(op, key string, err error) error {
	var ios *types.InvalidObjectState
	if !errors.As(err, &ios) && errorCode(err) != "InvalidObjectState" {
		return nil
	}
	class := "an archive class"
	if ios != nil && ios.StorageClass != "" {
		class = string(ios.StorageClass)
	}
	return fmt.Errorf("%s %s: %w (%s): request a restore and run the command again once it is done: "+
		"`aws s3api restore-object --bucket %s --key %s --restore-request Days=7` "+
		"(docs/STORAGE_CLASSES.md \"Reading from a cold class\"): %w",
		op, key, store.ErrArchived, class, s.bucket, s.full(key), err)
}

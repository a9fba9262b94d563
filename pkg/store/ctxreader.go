package store

import (
	"context"
	"io"
)

// ContextReader stops a copy as soon as ctx is cancelled, so a cancelled Put returns promptly even
// when the source would keep producing data.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package durableobject

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// BatchPageBytes bounds the first export page of each object of a batch (max_bytes): a batch's
// answer holds MaxBatchItems of them at most. A larger object's export continues alone, page by
// page (PageBytes each).
const BatchPageBytes = 256 << 10

// firstPages fetches the first export page of each object: several in one batch, one alone with
// ExportPage. An object the batch could not settle (the batch failed, its answer is an error or not
// a page, or the module has no batch endpoint) is fetched again alone, with ExportPage's retries.
func (c *Client) firstPages(ctx context.Context, class string, ids []string) []fetched {
	out := make([]fetched, len(ids))
	var answers []batchAnswer
	if len(ids) > 1 && c.batchEnabled() {
		q := c.exportQuery("")
		pb := BatchPageBytes
		if c.PageBytes > 0 {
			pb = min(pb, c.PageBytes)
		}
		q.Set("max_bytes", strconv.Itoa(pb))
		reqs := make([]batchReq, len(ids))
		for i, id := range ids {
			reqs[i] = batchReq{method: http.MethodGet, id: id, op: "export", q: q}
		}
		var err error
		answers, err = c.batch(ctx, class, reqs)
		if err != nil && !errors.Is(err, errNoBatch) && ctx.Err() == nil {
			answers = nil // fetched again alone below
		}
	}
	for i, id := range ids {
		out[i].id = id
		if i < len(answers) && answers[i].err == nil {
			p, err := parsePage(answers[i].body, true)
			if err == nil {
				out[i].first = p
				continue
			}
		}
		out[i].first, out[i].err = c.ExportPage(ctx, class, id, "")
	}
	return out
}

// exportQuery is the query of an export page request.
func (c *Client) exportQuery(cursor string) url.Values {
	q := url.Values{}
	if c.PageLimit > 0 {
		q.Set("limit", strconv.Itoa(c.PageLimit))
	}
	if c.PageBytes > 0 {
		q.Set("max_bytes", strconv.Itoa(c.PageBytes))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}

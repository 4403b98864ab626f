package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/airut/airut/internal/allowlist"
)

// Filter inspects or rewrites an allowed request after the allowlist
// decision and before credentials are injected and upstream is dialled.
// It is the seam for SigV4 re-signing, GraphQL operation checks and the
// Anthropic tool rewrite (S5.3–S5.6). A non-nil error blocks the request;
// its text goes into the 403 body.
type Filter func(*Request) error

// Request is what a Filter sees.
type Request struct {
	// HTTP is the request as it will go upstream; a filter may change its
	// headers. Its body is only read through Body.
	HTTP *http.Request
	// Host is the destination, normalised (lower-case, no port, no
	// trailing dot).
	Host string
	// Path is the path and query, percent-decoded once.
	Path string
	// Decision is the allowlist decision that let the request through.
	Decision allowlist.Decision

	maxBody int64
	held    bool
	body    []byte
	bodyErr error
	gql     *gqlRequest // parsed once for the GraphQL checks
	gqlErr  error
}

// Body reads and holds the request body, at most the proxy's MaxBody
// bytes, and makes it the body that goes upstream. Over the cap or
// unreadable it returns an error matching ErrBodyTooLarge or
// ErrBodyUnreadable, and the request is blocked whatever the filter
// returns: fail closed.
func (r *Request) Body() ([]byte, error) {
	if r.held {
		return r.body, r.bodyErr
	}
	r.held = true
	r.body, r.bodyErr = r.readBody()
	if r.bodyErr == nil {
		r.SetBody(r.body)
	}
	return r.body, r.bodyErr
}

func (r *Request) readBody() ([]byte, error) {
	if r.HTTP.ContentLength > r.maxBody {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, r.HTTP.ContentLength, r.maxBody)
	}
	if r.HTTP.Body == nil || r.HTTP.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.HTTP.Body, r.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBodyUnreadable, err)
	}
	if int64(len(b)) > r.maxBody {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, r.maxBody)
	}
	return b, nil
}

// SetBody replaces the body that goes upstream.
func (r *Request) SetBody(b []byte) {
	r.HTTP.Body = io.NopCloser(bytes.NewReader(b))
	r.HTTP.ContentLength = int64(len(b))
	r.HTTP.TransferEncoding = nil
	if len(b) == 0 {
		r.HTTP.Body = http.NoBody
	}
}

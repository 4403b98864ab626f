package secrets

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// An aws-chunked body (x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-
// PAYLOAD, …-TRAILER, and their ECDSA forms) signs every chunk, each
// signature chained to the one before it from the request's own, and the
// trailing headers (checksums) after the last chunk:
//
//	10000;chunk-signature=<sig>\r\n <65536 bytes>\r\n
//	0;chunk-signature=<sig>\r\n
//	x-amz-checksum-crc32:…\r\n x-amz-trailer-signature:<sig>\r\n   (trailer form)
//	\r\n
//
// The proxy re-signs it as it streams: each chunk is held until it has
// been read whole (its signature goes before it), its agent signature is
// checked against the surrogate chain, and it leaves with a signature of
// the real chain. One chunk is held at a time, never the body.

// Bounds on what an aws-chunked body may contain.
const (
	maxChunkLine    = 512 // "<hex>;chunk-signature=<sig>"
	maxTrailerLine  = 4 << 10
	maxTrailerLines = 64
)

const (
	chunkSigPrefix   = ";chunk-signature="
	trailerSigHeader = "x-amz-trailer-signature"
)

var errChunkSignature = errors.New("aws-chunked: chunk signature does not verify with the surrogate key")

// chain is one side of a chunk signature chain: the agent's, checked with
// the surrogate key, or the real one, signed with the real key.
type chain struct {
	alg     string
	amzDate string
	scope   scope
	prev    string
	hmacKey []byte            // SigV4
	ecKey   *ecdsa.PrivateKey // SigV4A
}

// verify checks sig over sts and advances the chain.
func (c *chain) verify(sts, sig string) bool {
	var ok bool
	if c.ecKey != nil {
		ok = verifyV4A(&c.ecKey.PublicKey, sts, sig)
	} else {
		want := hmacSHA256(c.hmacKey, sts)
		got, err := hex.DecodeString(sig)
		ok = err == nil && hmac.Equal(want, got)
	}
	if ok {
		c.prev = sig
	}
	return ok
}

// sign signs sts, in exactly width hex digits (padded with '*' when the
// agent's field was), and advances the chain.
func (c *chain) sign(sts string, width int, padded bool) (string, error) {
	var sig string
	if c.ecKey != nil {
		s, err := signV4AWidth(c.ecKey, sts, width, padded)
		if err != nil {
			return "", err
		}
		sig = s
	} else {
		sig = hex.EncodeToString(hmacSHA256(c.hmacKey, sts))
	}
	c.prev = sig
	if len(sig) < width {
		return sig + strings.Repeat("*", width-len(sig)), nil
	}
	return sig, nil
}

// chunkResigner is the body of a re-signed aws-chunked request.
type chunkResigner struct {
	src      io.Closer
	br       *bufio.Reader
	maxChunk int64
	trailer  bool
	agent    chain // verifies the agent's signatures (surrogate key)
	real     chain // signs with the real key

	buf  []byte   // the chunk held
	out  [][]byte // what is ready to be read, in order
	done bool
	err  error
}

func newChunkResigner(body io.ReadCloser, maxChunk int64, trailer bool, agent, real chain) *chunkResigner {
	return &chunkResigner{src: body, br: bufio.NewReaderSize(body, 64<<10), maxChunk: maxChunk,
		trailer: trailer, agent: agent, real: real}
}

func (c *chunkResigner) Close() error { return c.src.Close() }

func (c *chunkResigner) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		switch {
		case c.err != nil:
			return 0, c.err
		case c.done:
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			// The request is cut off: the upstream sees a truncated body
			// and rejects it, and nothing more of it is signed.
			c.err = fmt.Errorf("aws-chunked re-signing: %w", err)
		}
	}
	n := copy(p, c.out[0])
	if c.out[0] = c.out[0][n:]; len(c.out[0]) == 0 {
		c.out = c.out[1:]
	}
	return n, nil
}

// line reads one CRLF-terminated line of at most max bytes, without it.
func (c *chunkResigner) line(max int) (string, error) {
	var b []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > max+2 {
			return "", errors.New("line too long")
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return "", errors.New("line not terminated by CRLF")
	}
	return string(b[:len(b)-2]), nil
}

// next reads one chunk (and after the last one, the trailer) and queues
// its re-signed form.
func (c *chunkResigner) next() error {
	head, err := c.line(maxChunkLine)
	if err != nil {
		return fmt.Errorf("chunk header: %w", err)
	}
	sizeHex, sig, ok := strings.Cut(head, chunkSigPrefix)
	if !ok || sizeHex == "" || len(sizeHex) > 16 {
		return fmt.Errorf("chunk header %q: want <hex size>;chunk-signature=<signature>", head)
	}
	size, err := strconv.ParseInt(sizeHex, 16, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("chunk header %q: bad size", head)
	}
	if size > c.maxChunk {
		return fmt.Errorf("chunk of %d bytes is over the limit of %d", size, c.maxChunk)
	}
	if int64(cap(c.buf)) < size {
		c.buf = make([]byte, size)
	}
	data := c.buf[:size]
	if _, err := io.ReadFull(c.br, data); err != nil {
		return fmt.Errorf("chunk data: %w", err)
	}
	if size > 0 {
		if end, err := c.line(0); err != nil || end != "" {
			return errors.New("chunk data not followed by CRLF")
		}
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	width, padded := len(sig), strings.HasSuffix(sig, "*")
	if !c.agent.verify(chunkStringToSign(c.agent.alg, c.agent.amzDate, c.agent.scope, c.agent.prev, hash), strings.TrimRight(sig, "*")) {
		return errChunkSignature
	}
	realSig, err := c.real.sign(chunkStringToSign(c.real.alg, c.real.amzDate, c.real.scope, c.real.prev, hash), width, padded)
	if err != nil {
		return err
	}
	c.out = append(c.out, []byte(sizeHex+chunkSigPrefix+realSig+"\r\n"))
	if size > 0 {
		c.out = append(c.out, data, []byte("\r\n"))
		return nil
	}
	if c.trailer {
		if err := c.trailers(); err != nil {
			return err
		}
	} else if end, err := c.line(0); err != nil || end != "" {
		return errors.New("last chunk not followed by CRLF")
	} else {
		c.out = append(c.out, []byte("\r\n"))
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		return errors.New("data after the last chunk")
	}
	c.done = true
	return nil
}

// trailers reads the trailing headers and their signature, and queues
// them with the real signature.
func (c *chunkResigner) trailers() error {
	var lines, raw []string
	sig, sigLine := "", ""
	for {
		l, err := c.line(maxTrailerLine)
		if err != nil {
			return fmt.Errorf("trailer: %w", err)
		}
		if l == "" {
			break
		}
		if sig != "" {
			return errors.New("trailer after the trailer signature")
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || !isToken(name) {
			return fmt.Errorf("trailer %q: want name:value", l)
		}
		if strings.EqualFold(name, trailerSigHeader) {
			sig, sigLine = strings.TrimSpace(value), l
			if sig == "" {
				return errors.New("empty x-amz-trailer-signature")
			}
			continue
		}
		if len(lines) == maxTrailerLines {
			return errors.New("too many trailers")
		}
		lines = append(lines, strings.ToLower(name)+":"+collapseSpaces(value))
		raw = append(raw, l)
	}
	if sig == "" {
		return errors.New("no x-amz-trailer-signature")
	}
	canonical := canonicalTrailers(lines)
	width, padded := len(sig), strings.HasSuffix(sig, "*")
	if !c.agent.verify(trailerStringToSign(c.agent.alg, c.agent.amzDate, c.agent.scope, c.agent.prev, canonical), strings.TrimRight(sig, "*")) {
		return errors.New("aws-chunked: trailer signature does not verify with the surrogate key")
	}
	realSig, err := c.real.sign(trailerStringToSign(c.real.alg, c.real.amzDate, c.real.scope, c.real.prev, canonical), width, padded)
	if err != nil {
		return err
	}
	// The trailers go on as the agent wrote them, so the body keeps its
	// length; only the signature's digits change.
	var b strings.Builder
	for _, l := range raw {
		b.WriteString(l + "\r\n")
	}
	i := strings.LastIndex(sigLine, sig)
	b.WriteString(sigLine[:i] + realSig + sigLine[i+len(sig):] + "\r\n\r\n")
	c.out = append(c.out, []byte(b.String()))
	return nil
}

// canonicalTrailers is "name:value\n" per trailer, sorted by name.
func canonicalTrailers(lines []string) string {
	sorted := slices.Clone(lines)
	slices.SortStableFunc(sorted, func(a, b string) int {
		na, _, _ := strings.Cut(a, ":")
		nb, _, _ := strings.Cut(b, ":")
		return strings.Compare(na, nb)
	})
	var b strings.Builder
	for _, l := range sorted {
		b.WriteString(l + "\n")
	}
	return b.String()
}

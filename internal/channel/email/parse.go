package email

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-message"
	// Registers decoders for non-UTF-8 charsets (ISO-8859-x, Windows-125x,
	// Shift_JIS ...) that real mail uses in subjects, names and bodies.
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/channel"
)

// maxPartSize bounds one body part or attachment held in memory.
const maxPartSize = 64 << 20

// inbound is what the channel reads from one message.
type inbound struct {
	header     mail.Header
	messageID  string // without angle brackets
	inReplyTo  []string
	references []string
	subject    string
	date       time.Time
}

// readHeader parses a message's header and the threading fields in it.
// Unknown charsets are tolerated: the raw text is better than no message.
func readHeader(raw []byte) (*inbound, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil, fmt.Errorf("parse message header: %w", err)
	}
	h := mail.Header{Header: e.Header}
	in := &inbound{header: h}
	in.messageID, _ = h.MessageID()
	in.inReplyTo, _ = h.MsgIDList("In-Reply-To")
	in.references, _ = h.MsgIDList("References")
	in.subject, _ = h.Subject()
	in.subject = strings.TrimSpace(in.subject)
	if d, err := h.Date(); err == nil {
		in.date = d
	}
	return in, nil
}

// readContent returns the reply text (quotes stripped) and the attachments.
func readContent(raw []byte) (string, []channel.Attachment, error) {
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return "", nil, fmt.Errorf("parse message: %w", err)
	}
	var htmlPart, textPart string
	var haveHTML, haveText bool
	var atts []channel.Attachment
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return "", nil, fmt.Errorf("read message part: %w", err)
		}
		if p == nil {
			break
		}
		data, rerr := io.ReadAll(io.LimitReader(p.Body, maxPartSize+1))
		if rerr != nil {
			return "", nil, fmt.Errorf("read message part: %w", rerr)
		}
		if len(data) > maxPartSize {
			return "", nil, fmt.Errorf("message part larger than %d bytes", maxPartSize)
		}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			t, _, _ := h.ContentType()
			switch {
			case t == "text/html" && !haveHTML:
				htmlPart, haveHTML = string(data), true
			case t == "text/plain" && !haveText:
				textPart, haveText = string(data), true
			}
		case *mail.AttachmentHeader:
			disp, _, _ := h.ContentDisposition()
			if disp != "attachment" || len(data) == 0 {
				continue
			}
			name, _ := h.Filename()
			atts = append(atts, channel.Attachment{Name: safeFileName(name, len(atts)+1), Data: data})
		}
	}
	var body string
	if haveHTML {
		body = htmlBody(htmlPart)
	}
	if strings.TrimSpace(body) == "" && haveText {
		body = textBody(textPart)
	}
	return body, atts, nil
}

// safeFileName reduces an attachment name to a base name that cannot leave
// the inbox directory; the gateway adds "-N" on clashes.
func safeFileName(name string, n int) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(strings.TrimSpace(name))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ".")
	if name == "" || name == "/" {
		return fmt.Sprintf("attachment-%d", n)
	}
	return name
}

var modelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// modelHint returns x for a recipient "local+x@domain" where local@domain is
// the channel's own address, or "".
func modelHint(h mail.Header, own string) string {
	ownLocal, ownDomain, ok := strings.Cut(strings.ToLower(own), "@")
	if !ok {
		return ""
	}
	var addrs []string
	for _, key := range []string{"To", "Cc"} {
		list, _ := h.AddressList(key)
		for _, a := range list {
			addrs = append(addrs, a.Address)
		}
	}
	for _, key := range []string{"Delivered-To", "X-Original-To"} {
		for _, v := range h.Values(key) {
			addrs = append(addrs, strings.Trim(strings.TrimSpace(v), "<>"))
		}
	}
	for _, a := range addrs {
		local, domain, ok := strings.Cut(a, "@")
		if !ok || !strings.EqualFold(domain, ownDomain) {
			continue
		}
		base, hint, ok := strings.Cut(local, "+")
		if !ok || !strings.EqualFold(base, ownLocal) || !modelName.MatchString(hint) {
			continue
		}
		return strings.ToLower(hint)
	}
	return ""
}

package email

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/markdown"
)

// outgoing is one reply before it is encoded.
type outgoing struct {
	from        *mail.Address
	to          []*mail.Address
	subject     string
	messageID   string // without angle brackets
	inReplyTo   string
	references  []string
	date        time.Time
	markdown    string
	attachments []channel.Attachment
}

const htmlHead = `<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px; line-height: 1.5; }
pre, code { font-family: Menlo, Consolas, monospace; font-size: 13px; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; }
blockquote { border-left: 3px solid #d0d7de; margin: 0; padding-left: 8px; color: #57606a; }
</style></head><body>
`

// buildMessage encodes o as a MIME message: multipart/alternative (text and
// HTML), inside multipart/mixed when there are attachments.
func buildMessage(o outgoing) ([]byte, error) {
	fragment, err := markdown.ToHTML(o.markdown)
	if err != nil {
		return nil, err
	}
	htmlDoc := htmlHead + fragment + "</body></html>\n"
	text := markdown.ToText(o.markdown)

	var h mail.Header
	h.SetDate(o.date)
	h.SetAddressList("From", []*mail.Address{o.from})
	h.SetAddressList("To", o.to)
	h.SetSubject(o.subject)
	h.SetMessageID(o.messageID)
	if o.inReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{o.inReplyTo})
	}
	if len(o.references) > 0 {
		h.SetMsgIDList("References", o.references)
	}
	// RFC 3834: vacation responders and the like must not answer us, or
	// an authorized sender's out-of-office would start a new task.
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("MIME-Version", "1.0")

	var buf bytes.Buffer
	if len(o.attachments) == 0 {
		iw, err := mail.CreateInlineWriter(&buf, h)
		if err != nil {
			return nil, fmt.Errorf("write reply header: %w", err)
		}
		if err := writeAlternatives(iw, text, htmlDoc); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}

	mw, err := mail.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("write reply header: %w", err)
	}
	iw, err := mw.CreateInline()
	if err != nil {
		return nil, fmt.Errorf("write reply body: %w", err)
	}
	if err := writeAlternatives(iw, text, htmlDoc); err != nil {
		return nil, err
	}
	for _, a := range o.attachments {
		var ah mail.AttachmentHeader
		mediaType, params := attachmentType(a)
		// name on Content-Type too: older Outlook reads only that.
		params["name"] = a.Name
		ah.SetContentType(mediaType, params)
		ah.SetFilename(a.Name)
		w, err := mw.CreateAttachment(ah)
		if err != nil {
			return nil, fmt.Errorf("write attachment %s: %w", a.Name, err)
		}
		if _, err := w.Write(a.Data); err != nil {
			return nil, fmt.Errorf("write attachment %s: %w", a.Name, err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("write attachment %s: %w", a.Name, err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("write reply: %w", err)
	}
	return buf.Bytes(), nil
}

func writeAlternatives(iw *mail.InlineWriter, text, htmlDoc string) error {
	parts := []struct{ ct, body string }{
		{"text/plain", text},
		{"text/html", htmlDoc},
	}
	for _, p := range parts {
		var ph mail.InlineHeader
		ph.SetContentType(p.ct, map[string]string{"charset": "utf-8"})
		w, err := iw.CreatePart(ph)
		if err != nil {
			return fmt.Errorf("write %s part: %w", p.ct, err)
		}
		if _, err := io.WriteString(w, p.body); err != nil {
			return fmt.Errorf("write %s part: %w", p.ct, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("write %s part: %w", p.ct, err)
		}
	}
	if err := iw.Close(); err != nil {
		return fmt.Errorf("write reply body: %w", err)
	}
	return nil
}

// attachmentType is the media type of an outgoing file by its extension,
// with its parameters: mime.TypeByExtension answers ".txt" with
// "text/plain; charset=utf-8", which is not a bare media type and formats
// to an empty Content-Type if passed as one. A text file that is not UTF-8
// loses the charset rather than claim a wrong one.
func attachmentType(a channel.Attachment) (string, map[string]string) {
	mediaType, params, err := mime.ParseMediaType(mime.TypeByExtension(path.Ext(a.Name)))
	if err != nil || mediaType == "" {
		return "application/octet-stream", map[string]string{}
	}
	if params == nil {
		params = map[string]string{}
	}
	if strings.HasPrefix(mediaType, "text/") {
		if utf8.Valid(a.Data) {
			params["charset"] = "utf-8"
		} else {
			delete(params, "charset")
		}
	}
	return mediaType, params
}

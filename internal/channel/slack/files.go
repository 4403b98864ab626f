package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/channel"
)

var errTooLarge = errors.New("file larger than the size cap")

// cappedBuffer fails a write that would take it past max, so a file that
// is bigger than it claimed is cut off, not held whole in memory. (The
// buffer is a field, not embedded: an embedded bytes.Buffer's ReadFrom
// would let io.Copy bypass Write.)
type cappedBuffer struct {
	buf bytes.Buffer
	max int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(b.buf.Len()+len(p)) > b.max {
		return 0, errTooLarge
	}
	return b.buf.Write(p)
}

// sizeText is a size for people: MiB, KiB or bytes.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// downloadFiles fetches a message's files with the bot token. slack-go
// sends the token only to https Slack hosts or the configured API URL's
// host and refuses any other URL (a remote file's url_private is whatever
// its creator chose). Files that cannot be had are named in notes for the
// agent instead; the message still goes ahead.
func (c *Channel) downloadFiles(ctx context.Context, files []slack.File, log *slog.Logger) (atts []channel.Attachment, notes []string) {
	for _, f := range files {
		name := path.Base(strings.ReplaceAll(f.Name, "\\", "/"))
		if name == "." || name == "/" || name == "" {
			name = f.ID
		}
		u := f.URLPrivateDownload
		if u == "" {
			u = f.URLPrivate
		}
		var why string
		switch {
		case f.Mode == "tombstone" || f.Mode == "hidden_by_limit":
			why = "not available in Slack"
		case f.IsExternal || f.Mode == "external":
			why = "an external file link, not a Slack upload"
		case u == "":
			why = "no download URL"
		case int64(f.Size) > c.cfg.MaxFileSize:
			why = "larger than the " + sizeText(c.cfg.MaxFileSize) + " limit"
		}
		if why == "" {
			buf := &cappedBuffer{max: c.cfg.MaxFileSize}
			err := c.api.GetFileContext(ctx, u, buf)
			switch {
			case errors.Is(err, errTooLarge):
				why = "larger than the " + sizeText(c.cfg.MaxFileSize) + " limit"
			case err != nil:
				why = "download failed"
				log.Warn("slack file not downloaded", "file", name, logError, err)
			default:
				atts = append(atts, channel.Attachment{Name: name, Data: buf.buf.Bytes()})
				continue
			}
		}
		log.Info("slack file skipped", "file", name, logReason, why)
		notes = append(notes, fmt.Sprintf("[Attachment %q was not downloaded: %s.]", name, why))
	}
	return atts, notes
}

package email

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

var (
	// Our own Message-IDs: airut.{conv}.{unix}.{nonce}@{domain}.
	ourMessageID = regexp.MustCompile(`(?i)^airut\.([0-9a-f]{8})\.[0-9]+\.[0-9a-z]+@`)
	subjectTag   = regexp.MustCompile(`(?i)\[ID:([0-9a-f]{8})\]`)
	// "Re:", "RE :", "Re[2]:", "Re(3):" at the start of a subject.
	replyPrefix = regexp.MustCompile(`(?i)^\s*re\s*(?:\[\d+\]|\(\d+\))?\s*:\s*`)
)

// threadConversation finds the conversation a message belongs to: from
// In-Reply-To, then References newest first, then a [ID:xxxxxxxx] subject
// tag. Message ids are given without angle brackets. It returns "" when no
// candidate exists.
func threadConversation(inReplyTo, references []string, subject string) string {
	for _, id := range inReplyTo {
		if m := ourMessageID.FindStringSubmatch(id); m != nil {
			return strings.ToLower(m[1])
		}
	}
	for i := len(references) - 1; i >= 0; i-- {
		if m := ourMessageID.FindStringSubmatch(references[i]); m != nil {
			return strings.ToLower(m[1])
		}
	}
	if m := subjectTag.FindStringSubmatch(subject); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// newMessageID returns an id without angle brackets.
func newMessageID(conv, domain string, now time.Time) string {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("airut.%s.%d.%s@%s", conv, now.Unix(), hex.EncodeToString(nonce[:]), domain)
}

// replySubject is "Re: [ID:conv] subject" with any reply prefixes and
// earlier tags folded away, so a long thread keeps one of each.
func replySubject(subject, conv string) string {
	s := subject
	for {
		before := s
		s = replyPrefix.ReplaceAllString(s, "")
		s = strings.TrimSpace(subjectTag.ReplaceAllString(s, ""))
		if s == before {
			break
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return fmt.Sprintf("Re: [ID:%s]", conv)
	}
	return fmt.Sprintf("Re: [ID:%s] %s", conv, s)
}

// replyReferences is the References of a reply: the original's References
// followed by the original's Message-ID.
func replyReferences(origRefs []string, origID string) []string {
	refs := append([]string(nil), origRefs...)
	if origID != "" {
		refs = append(refs, origID)
	}
	return refs
}

package markdown

import (
	"strings"
	"unicode/utf8"
)

const fence = "```"

// SplitMrkdwn cuts mrkdwn text (as ToMrkdwn makes it) into chunks of at
// most limit characters (runes, as Slack counts them), each readable on its
// own: cuts fall between blocks where possible, else between lines, else
// between words; a code block that has to be cut is closed at the end of
// one chunk and reopened at the start of the next; a link or an &entity;
// is never cut in two. limit must leave room for the fences (at least 64).
func SplitMrkdwn(s string, limit int) []string {
	limit = max(limit, 64)
	s = strings.Trim(s, "\n")
	if utf8.RuneCountInString(s) <= limit {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	// Room for "\n```" closing a chunk and "```\n" reopening the next.
	budget := limit - 2*(len(fence)+1)

	var chunks []string
	var cur []string // lines of the current chunk
	curLen := 0      // runes in cur joined with "\n"
	inCode := false  // the current line is inside a code block
	codeAtStart := false
	lastBreak := -1 // index in cur after which a blank line or block end lies

	flush := func(upto int, stillInCode bool) {
		lines := cur[:upto]
		text := strings.TrimRight(strings.Trim(strings.Join(lines, "\n"), "\n"), " ")
		if codeAtStart {
			text = fence + "\n" + text
		}
		if stillInCode {
			text += "\n" + fence
		}
		if strings.Trim(text, "\n") != "" {
			chunks = append(chunks, text)
		}
		rest := append([]string(nil), cur[upto:]...)
		cur, curLen, lastBreak = rest, 0, -1
		for i, l := range rest {
			if i > 0 {
				curLen++
			}
			curLen += utf8.RuneCountInString(l)
		}
		codeAtStart = stillInCode
	}

	for _, line := range strings.Split(s, "\n") {
		isFence := strings.HasPrefix(line, fence)
		// Lines longer than a chunk are cut into pieces first.
		for _, piece := range cutLine(line, budget) {
			n := utf8.RuneCountInString(piece)
			add := n
			if len(cur) > 0 {
				add++
			}
			for curLen+add > budget && len(cur) > 0 {
				// Prefer the last block boundary if it keeps the chunk at
				// least half full; the lines after it (a code block that
				// began there, too) move on whole.
				if lastBreak > 0 && runesOf(cur[:lastBreak]) >= budget/2 {
					flush(lastBreak, false)
				} else {
					flush(len(cur), inCode)
				}
				add = n
				if len(cur) > 0 {
					add++
				}
			}
			cur = append(cur, piece)
			curLen += add
		}
		if isFence {
			inCode = !inCode
		}
		if !inCode && (line == "" || isFence) {
			lastBreak = len(cur)
		}
	}
	if len(cur) > 0 {
		flush(len(cur), false)
	}
	return chunks
}

func runesOf(lines []string) int {
	n := 0
	for i, l := range lines {
		if i > 0 {
			n++
		}
		n += utf8.RuneCountInString(l)
	}
	return n
}

// cutLine cuts a line longer than limit runes at spaces where it can,
// otherwise anywhere that is not inside a <link> or an &entity;.
func cutLine(line string, limit int) []string {
	var out []string
	for utf8.RuneCountInString(line) > limit {
		cut := byteIndexOfRune(line, limit)
		if sp := strings.LastIndexByte(line[:cut], ' '); sp > cut/2 {
			cut = sp + 1
		} else {
			cut = safeCut(line, cut)
		}
		out = append(out, strings.TrimRight(line[:cut], " "))
		line = line[cut:]
	}
	return append(out, line)
}

// safeCut moves a cut back to before an open <…> or &…; that spans it.
func safeCut(line string, cut int) int {
	if lt := strings.LastIndexByte(line[:cut], '<'); lt > 0 && !strings.Contains(line[lt:cut], ">") {
		return lt
	}
	if amp := strings.LastIndexByte(line[:cut], '&'); amp > 0 && cut-amp < 8 && !strings.Contains(line[amp:cut], ";") {
		return amp
	}
	return cut
}

func byteIndexOfRune(s string, n int) int {
	i := 0
	for pos := range s {
		if i == n {
			return pos
		}
		i++
	}
	return len(s)
}

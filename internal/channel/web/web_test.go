package web_test

import (
	"context"
	"io"
	"testing"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/web"
)

func TestReplyKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	ch, err := web.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg := &channel.Message{ConversationID: "0badcafe"}
	r := channel.Reply{TaskID: "t1", Outcome: channel.OutcomeSuccess, Markdown: "done",
		Attachments: []channel.Attachment{{Name: "report.txt", Data: []byte("hi")}, {Name: "../escape", Data: []byte("x")}}}
	if err := ch.Reply(context.Background(), msg, r); err != nil {
		t.Fatal(err)
	}
	got, err := web.Replies(dir, "0badcafe")
	if err != nil || len(got) != 1 || got[0].Markdown != "done" || got[0].Task != "t1" {
		t.Fatalf("Replies = %+v, %v", got, err)
	}
	if len(got[0].Files) != 2 || got[0].Files[0] != "report.txt" || got[0].Files[1] != "escape" {
		t.Errorf("files %v: the traversal name must be kept as its base name only", got[0].Files)
	}
	f, err := web.OpenFile(dir, "0badcafe", "t1", "report.txt")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()
	if string(data) != "hi" {
		t.Errorf("file %q", data)
	}
	for _, bad := range [][3]string{{"0badcafe", "t1", "../reply.json"}, {"..", "t1", "report.txt"}, {"0badcafe", "..", "report.txt"}, {"0badcafe", "t1", ""}} {
		if f, err := web.OpenFile(dir, bad[0], bad[1], bad[2]); err == nil {
			f.Close()
			t.Errorf("OpenFile%v opened", bad)
		}
	}
	if err := ch.Reply(context.Background(), msg, channel.Reply{TaskID: "../x"}); !channel.IsPermanent(err) {
		t.Errorf("bad task id: %v, want a permanent error", err)
	}
	if got, _ := web.Replies(dir, "ffffffff"); len(got) != 0 {
		t.Errorf("unknown conversation: %v", got)
	}
}

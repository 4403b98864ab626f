package slack

import (
	"errors"

	"github.com/slack-go/slack"
)

// slackCode returns the Slack error code ("channel_not_found") in err, or
// "" when err is not a refusal by Slack (a network error, a timeout).
func slackCode(err error) string {
	var e slack.SlackErrorResponse
	if errors.As(err, &e) {
		return e.Err
	}
	return ""
}

func isSlackError(err error, code string) bool { return err != nil && slackCode(err) == code }

// permanentCodes are refusals that retrying the same call does not
// change: the thread, channel or token is gone, or the request itself is
// wrong. Everything else (ratelimited after slack-go's own retries,
// internal_error, fatal_error, network errors) is worth retrying.
var permanentCodes = map[string]bool{
	"channel_not_found": true, "not_in_channel": true, "is_archived": true, "thread_not_found": true,
	"message_not_found": true, "cant_update_message": true, "msg_too_long": true, "no_text": true,
	"invalid_blocks": true, "invalid_arguments": true, "restricted_action": true, "file_uploads_disabled": true,
	"not_authed": true, "invalid_auth": true, "account_inactive": true, "token_revoked": true,
	"token_expired": true, "missing_scope": true, "not_allowed_token_type": true, "team_access_not_granted": true,
}

// Permanent reports whether a Reply or Done error is a refusal that
// retrying will not change, so the gateway can record it instead of
// retrying forever (channel.ErrPermanent, once the contract has it).
func Permanent(err error) bool { return permanentCodes[slackCode(err)] }

package cli

import (
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/channel/slack"
	"github.com/airut/airut/internal/gateway"
)

// ChannelFactories are the channel kinds this build registers with the
// gateway, by name. The gateway imports no channel package: what a repo's
// airut.yaml section means for a channel is decided here.
func ChannelFactories() map[string]gateway.ChannelFactory {
	return map[string]gateway.ChannelFactory{
		"email": emailChannel,
		"slack": slackChannel,
		"web":   webChannel,
	}
}

// emailChannel maps repos.<id>.email onto the email channel; with
// microsoft_oauth2 the channel logs in with XOAUTH2 and the password
// (which email.New refuses beside OAuth2) is not passed on.
func emailChannel(env gateway.ChannelEnv) (channel.Channel, error) {
	e := env.Repo.Email
	if e == nil {
		return nil, nil
	}
	pw := e.Account.Password.Reveal()
	var oauth *email.OAuth2Config
	if o := e.MicrosoftOAuth2; o != nil {
		// XOAUTH2 replaces the password; the token endpoint and scope
		// default to Microsoft 365's.
		oauth = &email.OAuth2Config{TenantID: o.TenantID.Reveal(), ClientID: o.ClientID, ClientSecret: o.ClientSecret.Reveal()}
		if pw != "" {
			env.Logger.Warn("email: microsoft_oauth2 is set, so account.password is not used")
		}
		pw = ""
	}
	imapTLS, smtpTLS := email.TLSImplicit, email.TLSStartTLS
	if !e.IMAP.TLS {
		imapTLS = email.TLSNone
	}
	if !e.SMTP.StartTLS {
		smtpTLS = email.TLSOpportunistic
	}
	ch, err := email.New(email.Config{
		IMAP: email.IMAPConfig{
			Server: e.IMAP.Server, Port: e.IMAP.Port,
			Username: e.Account.Username, Password: pw,
			TLS: imapTLS, CAFile: e.IMAP.CAFile, UseIdle: e.IMAP.UseIdle,
			PollInterval:          e.IMAP.PollIntervalDuration(),
			IdleReconnectInterval: e.IMAP.IdleReconnectDuration(),
		},
		SMTP: email.SMTPConfig{
			Server: e.SMTP.Server, Port: e.SMTP.Port,
			Username: e.Account.Username, Password: pw,
			RequireAuth: e.SMTP.RequireAuth, TLS: smtpTLS, CAFile: e.SMTP.CAFile,
		},
		OAuth2:                    oauth,
		From:                      e.Account.From,
		AuthorizedSenders:         e.Auth.AuthorizedSenders,
		TrustedAuthservID:         e.Auth.TrustedAuthservID,
		MicrosoftInternalFallback: e.Auth.MicrosoftInternalFallback,
		DashboardBaseURL:          env.Config.Dashboard.BaseURL,
	}, email.ConversationLookup(env.Exists), env.Logger)
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// slackChannel maps repos.<id>.slack onto the Slack channel; its thread
// map and inbox live in the channel's state directory.
func slackChannel(env gateway.ChannelEnv) (channel.Channel, error) {
	sc := env.Repo.Slack
	if sc == nil {
		return nil, nil
	}
	rules := make([]slack.Rule, len(sc.Authorized))
	for i, r := range sc.Authorized {
		rules[i] = slack.Rule{WorkspaceMembers: r.WorkspaceMembers, UserGroup: r.UserGroup, UserID: r.UserID}
	}
	ch, err := slack.New(slack.Config{
		BotToken: sc.BotToken.Reveal(), AppToken: sc.AppToken.Reveal(), APIURL: sc.APIURL,
		Authorized: rules, AllowedChannels: sc.AllowedChannels,
		StateDir: env.StateDir, Exists: env.Exists,
	}, env.Logger)
	if err != nil {
		return nil, err
	}
	return ch, nil
}

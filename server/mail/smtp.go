package mail

import (
	"context"
	"fmt"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// SMTP sends through a relay with github.com/wneessen/go-mail: one
// connection per mail, TLS as SMTP_URL says, authentication discovered from
// what the server offers when a user is given.
type SMTP struct {
	s       smtpSettings
	timeout time.Duration
}

var _ Sender = (*SMTP)(nil)

func (s *SMTP) client() (*gomail.Client, error) {
	opts := []gomail.Option{gomail.WithPort(s.s.port), gomail.WithTimeout(s.timeout)}
	switch s.s.tls {
	case "implicit":
		opts = append(opts, gomail.WithSSL())
	case "starttls":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.s.user != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.s.user), gomail.WithPassword(s.s.pass))
	}
	return gomail.NewClient(s.s.host, opts...)
}

// Send delivers m. Errors name the relay's host, never its credentials.
func (s *SMTP) Send(ctx context.Context, from string, m Message) error {
	msg, err := build(from, m)
	if err != nil {
		return err
	}
	c, err := s.client()
	if err != nil {
		return fmt.Errorf("mail: SMTP client for %s: %w", s.s.hostPort(), err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: send through %s: %w", s.s.hostPort(), err)
	}
	return nil
}

// build makes the MIME message: text, with an HTML alternative when there
// is one.
func build(from string, m Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("mail: MAIL_FROM: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("mail: recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

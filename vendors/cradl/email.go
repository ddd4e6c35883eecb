package cradl

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ingest-dev/ingest/vendors"
)

// submitEmail mails the document to the workflow's address; the execution it starts is found
// later by the subject. The reference is mail:<document id>.
func (c *Client) submitEmail(ctx context.Context, doc vendors.Document, ct string) (string, error) {
	if doc.ID == "" || strings.IndexFunc(doc.ID, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", &vendors.Error{Vendor: name, Op: "submit", Permanent: true, NotSent: true,
			Message: fmt.Sprintf("the document id %q cannot name a mail: it must be one word", doc.ID)}
	}
	if doc.Open == nil {
		return "", &vendors.Error{Vendor: name, Op: "submit", Permanent: true, NotSent: true, Message: "the document cannot be opened"}
	}
	to, err := c.workflowEmail(ctx)
	if err != nil {
		return "", err
	}
	if err := c.sendMail(ctx, doc, ct, to); err != nil {
		return "", err
	}
	return mailRefPrefix + doc.ID, nil
}

// workflowEmail is the configured address, else the workflow's emailConfig.email (read once).
func (c *Client) workflowEmail(ctx context.Context) (string, error) {
	if c.cfg.WorkflowEmail != "" {
		return c.cfg.WorkflowEmail, nil
	}
	c.mu.Lock()
	known := c.email
	c.mu.Unlock()
	if known != "" {
		return known, nil
	}
	res, err := c.do(ctx, "workflow", jsonRequest(http.MethodGet, c.endpoint(nil, "workflows", c.cfg.WorkflowID), nil))
	if err != nil {
		return "", err
	}
	var wf struct {
		EmailConfig *struct {
			Email string `json:"email"`
		} `json:"emailConfig"`
	}
	raw, err := vendors.ReadJSON(name, "workflow", res, &wf)
	if err != nil {
		return "", err
	}
	if wf.EmailConfig == nil || wf.EmailConfig.Email == "" {
		return "", &vendors.Error{Vendor: name, Op: "workflow", Permanent: true, NotSent: true,
			Message: fmt.Sprintf("the workflow %s has no e-mail address (emailConfig.email): configure one at Cradl or set the workflow e-mail in the config", c.cfg.WorkflowID)}
	}
	if _, err := mail.ParseAddress(wf.EmailConfig.Email); err != nil {
		return "", vendors.Malformed(name, "workflow", fmt.Errorf("emailConfig.email: %w", err), raw)
	}
	c.mu.Lock()
	c.email = wf.EmailConfig.Email
	c.mu.Unlock()
	return wf.EmailConfig.Email, nil
}

// sendMail delivers one message with the document attached. Everything up to the end of DATA
// that fails leaves no mail at the server (NotSent); only a lost answer to the final dot is in
// doubt.
func (c *Client) sendMail(ctx context.Context, doc vendors.Document, ct, to string) error {
	s := c.cfg.SMTP
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	tlsCfg := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		tlsCfg = s.TLSConfig.Clone()
		if tlsCfg.ServerName == "" {
			tlsCfg.ServerName = s.Host
		}
	}
	fail := func(stage string, err error, inDoubt bool) error {
		return smtpError(ctx, stage, err, inDoubt)
	}

	body, err := doc.Open(ctx)
	if err != nil {
		return &vendors.Error{Vendor: name, Op: "submit", NotSent: true, Err: err, Message: fmt.Sprintf("could not open the document: %v", err)}
	}
	defer body.Close()

	dialer := &net.Dialer{Timeout: 30 * time.Second}
	var conn net.Conn
	if s.TLS == SMTPTLS {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fail("connection", err, false)
	}
	// go-smtp sets its own deadlines per command; a cancelled context closes the connection.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var sc *smtp.Client
	if s.TLS == SMTPStartTLS {
		if sc, err = smtp.NewClientStartTLS(conn, tlsCfg); err != nil {
			conn.Close()
			return fail("STARTTLS", err, false)
		}
	} else {
		sc = smtp.NewClient(conn)
	}
	defer sc.Close()
	if c.cfg.Timeout > 0 {
		sc.CommandTimeout, sc.SubmissionTimeout = c.cfg.Timeout, c.cfg.Timeout
	}
	if s.Username != "" {
		if ok, _ := sc.Extension("AUTH"); !ok {
			return &vendors.Error{Vendor: name, Op: "submit", Permanent: true, NotSent: true,
				Message: fmt.Sprintf("the mail server %s offers no AUTH, but an SMTP username is configured", addr)}
		}
		if err := sc.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return fail("login", err, false)
		}
	}
	if err := sc.Mail(s.From, nil); err != nil {
		return fail("sender", err, false)
	}
	if err := sc.Rcpt(to, nil); err != nil {
		return fail("recipient "+to, err, false)
	}
	w, err := sc.Data()
	if err != nil {
		return fail("message", err, false)
	}
	// The message is written straight into DATA: the SMTP writer is the far end of the stream,
	// so no pipe or buffer is needed to keep the document out of memory.
	if err := writeMessage(w, s.From, to, doc, ct, body); err != nil {
		// No final dot goes out: the server drops the unfinished message with the connection.
		conn.Close()
		return fail("message", err, false)
	}
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		return fail("message", err, !errors.As(err, &se))
	}
	_ = sc.Quit()
	return nil
}

// smtpError reads an SMTP failure: a 4xx reply is transient, a 5xx permanent (a refused login
// says so); no reply at all is transient and, after the final dot, in doubt.
func smtpError(ctx context.Context, stage string, err error, inDoubt bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	e := &vendors.Error{Vendor: name, Op: "submit", Err: err, NotSent: !inDoubt}
	var se *smtp.SMTPError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &se):
		e.NotSent = true
		e.Permanent = se.Code >= 500
		e.Message = fmt.Sprintf("the mail server refused the %s: %d %s", stage, se.Code, se.Message)
		if stage == "login" && se.Code >= 500 {
			e.Message = fmt.Sprintf("the mail server refused the SMTP credentials: %d %s", se.Code, se.Message)
		}
	case errors.As(err, &cv), errors.As(err, &ua):
		e.Permanent = true
		e.Message = fmt.Sprintf("the mail server's certificate is not trusted (%s): %v", stage, err)
	case inDoubt:
		e.Message = fmt.Sprintf("no answer from the mail server after the message was sent: %v", err)
	default:
		e.Message = fmt.Sprintf("mail server %s failed: %v", stage, err)
	}
	return e
}

// writeMessage writes a multipart/mixed message: a short text, then the document in base64.
func writeMessage(w io.Writer, from, to string, doc vendors.Document, ct string, body io.Reader) error {
	mw := multipart.NewWriter(w)
	fn := vendors.UploadName(doc)
	h := []string{
		"From: " + (&mail.Address{Address: from}).String(),
		"To: " + (&mail.Address{Address: to}).String(),
		"Subject: " + mime.QEncoding.Encode("utf-8", subjectFor(doc.ID)),
		"Message-ID: " + messageID(from),
		"Date: " + time.Now().Format(time.RFC1123Z),
		"MIME-Version: 1.0",
		"Content-Type: " + mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()}),
	}
	if _, err := io.WriteString(w, strings.Join(h, "\r\n")+"\r\n\r\n"); err != nil {
		return err
	}
	tp, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	if err != nil {
		return err
	}
	qp := quotedprintable.NewWriter(tp)
	if _, err := fmt.Fprintf(qp, "Document %s (%s), sent by ingest.\r\n", doc.ID, fn); err != nil {
		return err
	}
	if err := qp.Close(); err != nil {
		return err
	}
	ap, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {mime.FormatMediaType(ct, map[string]string{"name": fn})},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": fn})},
		"Content-Transfer-Encoding": {"base64"},
	})
	if err != nil {
		return err
	}
	lw := &lineWriter{w: ap}
	enc := base64.NewEncoder(base64.StdEncoding, lw)
	if _, err := io.Copy(enc, body); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := lw.end(); err != nil {
		return err
	}
	return mw.Close()
}

// lineWriter breaks base64 into 76-character lines, as MIME wants.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return n, err
		}
		n, p, l.col = n+k, p[k:], l.col+k
		if l.col == 76 {
			if _, err := io.WriteString(l.w, "\r\n"); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) end() error {
	if l.col == 0 {
		return nil
	}
	_, err := io.WriteString(l.w, "\r\n")
	return err
}

// messageID makes a unique Message-ID in the sender's domain.
func messageID(from string) string {
	domain := "ingest.invalid"
	if _, d, ok := strings.Cut(from, "@"); ok && d != "" {
		domain = d
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return fmt.Sprintf("<%s.%d@%s>", hex.EncodeToString(b), time.Now().UnixNano(), domain)
}

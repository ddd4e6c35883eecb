package cradlsim

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// emailTypes are the attachment types that start an execution (Cradl: JPEG, PNG, TIFF, PDF).
var emailTypes = map[string]bool{"application/pdf": true, "image/jpeg": true, "image/png": true, "image/tiff": true}

var extTypes = map[string]string{".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".png": "image/png", ".tif": "image/tiff", ".tiff": "image/tiff"}

// SMTPBackend receives mail for the workflow's address (WorkflowEmail; other recipients are a
// 550). Each PDF, JPEG, PNG or TIFF attachment of a message starts an execution with input
// {documentId, email:{subject, origin, body}}; a message without one is accepted and ignored.
func (s *Server) SMTPBackend() smtp.Backend {
	return smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		sess := &session{s: s}
		if s.cfg.SMTPUsername != "" {
			return &authSession{session: sess}, nil
		}
		return sess, nil
	})
}

type session struct {
	s      *Server
	authed bool
	from   string
	rcpts  []string
}

func (ss *session) needsAuth() bool { return ss.s.cfg.SMTPUsername != "" && !ss.authed }

func (ss *session) Reset() { ss.from, ss.rcpts = "", nil }

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.needsAuth() {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.needsAuth() {
		return smtp.ErrAuthRequired
	}
	if ss.s.cfg.WorkflowEmail == "" || !strings.EqualFold(to, ss.s.cfg.WorkflowEmail) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such workflow address: " + to}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	// go-smtp wants r consumed before Data returns, whatever happens.
	defer func() { _, _ = io.Copy(io.Discard, r) }()
	if ss.needsAuth() {
		return smtp.ErrAuthRequired
	}
	if len(ss.rcpts) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No recipients"}
	}
	return ss.s.receive(ss.from, ss.rcpts[0], r)
}

// authSession asks for AUTH PLAIN with the configured credentials.
type authSession struct{ *session }

func (as *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (as *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != as.s.cfg.SMTPUsername || password != as.s.cfg.SMTPPassword {
			return smtp.ErrAuthFailed
		}
		as.authed = true
		return nil
	}), nil
}

type attachment struct {
	name, contentType string
	read              reading
	content           simkit.Inspection
}

// receive parses a message and starts an execution per attachment.
func (s *Server) receive(envelopeFrom, to string, r io.Reader) error {
	limit := s.cfg.MaxBytes/3*4 + 1<<20
	lr := &io.LimitedReader{R: r, N: limit + 1}
	msg, err := mail.ReadMessage(bufio.NewReader(lr))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
	}
	subject := msg.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	origin := envelopeFrom
	if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
		origin = a.Address
	}
	var atts []attachment
	var text string
	if err := s.walk(textproto.MIMEHeader(msg.Header), msg.Body, 0, &atts, &text); err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message: " + err.Error()}
	}
	if lr.N <= 0 {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large"}
	}
	m := Mail{From: origin, To: to, Subject: subject, MessageID: msg.Header.Get("Message-ID")}
	now := time.Now()
	s.mu.Lock()
	var docs []*document
	for _, a := range atts {
		d := &document{id: "las:document:" + simkit.RandomHex(16), name: a.name, contentType: a.contentType,
			hasContent: true, created: now, read: a.read}
		s.docs[d.id] = d
		s.keepDocument(d)
		e := s.newExecution(map[string]any{
			"documentId": d.id,
			"email":      map[string]any{"subject": subject, "origin": origin, "body": text},
		})
		m.Attachments = append(m.Attachments, a.name)
		m.Executions = append(m.Executions, e.ExecutionID)
		docs = append(docs, d)
	}
	s.mails = append(s.mails, m)
	s.mu.Unlock()
	for i, d := range docs {
		s.record(d, atts[i].content)
	}
	return nil
}

// walk goes through the MIME tree collecting attachments and the first plain text.
func (s *Server) walk(h textproto.MIMEHeader, body io.Reader, depth int, atts *[]attachment, text *string) error {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = "application/octet-stream"
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth > 5 || params["boundary"] == "" {
			return errors.New("multipart without a boundary, or nested too deep")
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart() // decodes quoted-printable itself
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := s.walk(p.Header, p, depth+1, atts, text); err != nil {
				return err
			}
		}
	}
	rd := body
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		rd = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		rd = quotedprintable.NewReader(body)
	}
	_, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	kind := ""
	switch {
	case emailTypes[mt]:
		kind = mt
	case mt == "application/octet-stream":
		kind = extTypes[strings.ToLower(path.Ext(name))]
	}
	if kind != "" {
		read, content, err := read(name, rd, s.cfg.MaxBytes)
		if err != nil {
			return fmt.Errorf("attachment %q: %w", name, err)
		}
		if content.Over {
			return fmt.Errorf("attachment %q is larger than %d bytes", name, s.cfg.MaxBytes)
		}
		*atts = append(*atts, attachment{name: name, contentType: kind, read: read, content: content})
		return nil
	}
	if mt == "text/plain" && name == "" && *text == "" {
		b, err := io.ReadAll(io.LimitReader(rd, 64<<10))
		if err != nil {
			return err
		}
		*text = strings.TrimSpace(string(b))
	}
	return nil
}

// ListenSMTP serves the SMTP receiver on addr (e.g. 127.0.0.1:0) without TLS, AUTH allowed in
// clear (tests). It returns the address it listens on and a function that stops it.
func (s *Server) ListenSMTP(addr string) (string, func(), error) {
	return s.ListenSMTPTLS(addr, nil, false)
}

// ListenSMTPTLS is ListenSMTP with TLS: STARTTLS offered with cfg, or (implicit) TLS from the
// first byte.
func (s *Server) ListenSMTPTLS(addr string, cfg *tls.Config, implicit bool) (string, func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := smtp.NewServer(s.SMTPBackend())
	srv.Domain = "cradl.sim"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = s.cfg.MaxBytes/3*4 + 1<<20
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if cfg != nil {
		if implicit {
			l = tls.NewListener(l, cfg)
		} else {
			srv.TLSConfig = cfg
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		// Serve may not have registered the listener yet when Shutdown ran: close it here too.
		_ = l.Close()
		<-done
	}
	return l.Addr().String(), stop, nil
}

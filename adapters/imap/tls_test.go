package imap_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
)

// TestTLSModes connects with implicit TLS and with STARTTLS to a server whose certificate comes
// from a private CA (Config.TLSConfig); the STARTTLS server refuses to log in without TLS, and a
// client that does not trust the CA does not get in.
func TestTLSModes(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	tests := []struct {
		name     string
		mode     string
		implicit bool
		trust    bool
		wantOK   bool
	}{
		{"implicit", imapsrc.TLSImplicit, true, true, true},
		{"starttls", imapsrc.TLSStartTLS, false, true, true},
		{"untrusted certificate", imapsrc.TLSImplicit, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			srv := startMemServer(t, memOptions{tls: serverTLS, implicit: tt.implicit})
			srv.appendMail(t, "INBOX", simple("tls"))
			cfg := e.config(srv.addr)
			cfg.TLS = tt.mode
			if tt.trust {
				cfg.TLSConfig = &tls.Config{RootCAs: roots}
			}
			r := start(t, cfg)
			if !tt.wantOK {
				waitHealthError(t, r, "certificate")
				return
			}
			r.waitHealthy(t)
			e.waitReceived(1, 10*time.Second)
		})
	}
}

func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test imap"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, roots
}

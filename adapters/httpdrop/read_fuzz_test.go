package httpdrop

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/httpapi"
)

// FuzzRead feeds arbitrary bodies and content types to the request parser (with the store that
// only checks, so no NATS is needed). Whatever arrives, the answer is a document list or a 4xx
// problem: never a panic, never a 5xx.
func FuzzRead(f *testing.F) {
	f.Add("multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.4 body\r\n--XX--\r\n"))
	f.Add("multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"vendor\"\r\n\r\ngini,laigo\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nplain text\r\n--XX--\r\n"))
	f.Add("multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.4 trunc"))
	f.Add("application/pdf", []byte("%PDF-1.7\n"))
	f.Add("", []byte("PK\x03\x04"))
	f.Add("multipart/form-data; boundary=\"", []byte("--\r\n"))
	d := &Drop{
		cfg:      Config{MaxDocumentBytes: 1 << 16, MaxRequestBytes: 1 << 18, MaxFiles: 4},
		log:      slog.New(slog.DiscardHandler),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"reason"}),
	}
	e := echo.New()
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/documents?vendor=gini&k=v", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Body = &clientBody{http.MaxBytesReader(nil, req.Body, d.cfg.MaxRequestBytes)}
		c := e.NewContext(req, httptest.NewRecorder())
		r, err := d.read(c, d.check, nil, nil)
		if err == nil {
			if len(r.files) == 0 || len(r.files) > d.cfg.MaxFiles {
				t.Fatalf("accepted %d files", len(r.files))
			}
			return
		}
		var p *httpapi.Problem
		if !errors.As(err, &p) || p.Status < 400 || p.Status >= 500 {
			t.Fatalf("error %v is not a 4xx problem", err)
		}
	})
}

package documine

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/ingest-dev/ingest/vendors"
)

// maxRememberedPackages bounds packageIDs: far more than the documents one instance has between
// "processed" and "result stored" at any time.
const maxRememberedPackages = 10000

// packageIDs maps a file id to the result package made for it, between the Check that makes it
// and the Finish that deletes it. Memory is enough: it only spares DocuMine a second package. An
// instance that restarts, or another instance that takes the document over, makes a new package
// and loses nothing; the one left behind is DocuMine's to expire.
type packageIDs struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

func newPackageIDs(maxEntries int) *packageIDs {
	return &packageIDs{m: map[string]string{}, max: maxEntries}
}

func (p *packageIDs) get(fileID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[fileID]
}

func (p *packageIDs) put(fileID, downloadID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[fileID]; !ok && len(p.m) >= p.max {
		for k := range p.m { // forget any one: the cost is one more package at DocuMine
			delete(p.m, k)
			break
		}
	}
	p.m[fileID] = downloadID
}

// forget drops fileID's package and returns its id ("" when none was remembered).
func (p *packageIDs) forget(fileID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.m[fileID]
	delete(p.m, fileID)
	return id
}

// packageProgress makes (or finds) the processed file's result package and reads its status: the
// file is done when its package is ready.
func (c *Client) packageProgress(ctx context.Context, fileID string) (vendors.Progress, error) {
	id, err := c.ensurePackage(ctx, fileID)
	if err != nil {
		return vendors.Progress{}, err
	}
	p, err := c.status(ctx, "package-status", "api.package.status", c.api.Package.Status, fileID, id)
	if err != nil {
		return vendors.Progress{}, c.packageGone(fileID, id, err)
	}
	if p.Failed {
		c.packages.forget(fileID)
		p.Error = "DocuMine could not build the result package: " + p.Error
	}
	return p, nil
}

// ensurePackage returns the package remembered for fileID, or asks DocuMine for a new one.
func (c *Client) ensurePackage(ctx context.Context, fileID string) (string, error) {
	if id := c.packages.get(fileID); id != "" {
		return id, nil
	}
	create := c.api.Package.Create
	var body []byte
	if create.Body != "" {
		body = expandBody(create.Body, map[string]string{
			"{fileId}": fileID, "{dossierId}": c.cfg.DossierID, "{templateId}": c.cfg.DossierTemplateID,
		})
	}
	res, err := c.caller.Do(ctx, "package-create", c.request(create.RequestShape, fileID, "", body, "application/json"))
	if err != nil {
		return "", err
	}
	raw, err := vendors.ReadJSON(vendorName, "package-create", res, nil)
	if err != nil {
		return "", err
	}
	v, err := decode(raw)
	if err != nil {
		return "", vendors.Malformed(vendorName, "package-create", err, raw)
	}
	id, err := idAt(v, create.IDKeys)
	if err != nil {
		return "", vendors.Malformed(vendorName, "package-create", fmt.Errorf("no package id in the answer (api.package.create.id_keys): %w", err), raw)
	}
	c.packages.put(fileID, id)
	return id, nil
}

// packageGone turns "the package is not there" (404, 410: expired, deleted by someone) into a
// transient error after forgetting it, so that the next look makes a new one; other errors pass.
func (c *Client) packageGone(fileID, downloadID string, err error) error {
	var e *vendors.Error
	if !errors.As(err, &e) || (e.Status != http.StatusNotFound && e.Status != http.StatusGone) {
		return err
	}
	c.packages.forget(fileID)
	cp := *e
	cp.Permanent = false
	cp.Message = fmt.Sprintf("result package %s is gone (%s); a new one is made on the next look", downloadID, e.Message)
	return &cp
}

// packageResult downloads the file's ready result package and reads it.
func (c *Client) packageResult(ctx context.Context, fileID string) (vendors.Result, error) {
	id := c.packages.get(fileID)
	if id == "" {
		// This instance did not see the package ready (it restarted, or another one polled).
		p, err := c.packageProgress(ctx, fileID)
		switch {
		case err != nil:
			return vendors.Result{}, err
		case p.Failed:
			return vendors.Result{}, &vendors.Error{Vendor: vendorName, Op: "result", Permanent: true, Message: p.Error}
		case !p.Done:
			return vendors.Result{}, &vendors.Error{Vendor: vendorName, Op: "result", RetryAfter: p.RetryAfter,
				Message: "the result package is being made; asking again shortly"}
		}
		id = c.packages.get(fileID)
	}
	dl := c.api.Package.Download
	res, err := c.caller.Do(ctx, "package-download", c.request(dl.RequestShape, fileID, id, nil, "application/zip, application/json"))
	if err != nil {
		return vendors.Result{}, c.packageGone(fileID, id, err)
	}
	data, err := readCapped(res, int64(dl.MaxBytes))
	if err != nil {
		return vendors.Result{}, err
	}
	r, err := readPackage(data, dl)
	if err != nil {
		return vendors.Result{}, vendors.Malformed(vendorName, "package-download", err, data)
	}
	return r, nil
}

// readCapped reads a download of at most limit bytes. Too large is permanent: the same package
// will not shrink (raise api.package.download.max_bytes and retry the document).
func readCapped(res *http.Response, limit int64) ([]byte, error) {
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, &vendors.Error{Vendor: vendorName, Op: "package-download", Err: err, Message: fmt.Sprintf("download cut off: %v", err)}
	}
	if int64(len(data)) > limit {
		return nil, &vendors.Error{Vendor: vendorName, Op: "package-download", Permanent: true,
			Message: fmt.Sprintf("the result package is larger than %d bytes (api.package.download.max_bytes)", limit)}
	}
	return data, nil
}

// readPackage reads a downloaded package: a ZIP of reports, or one JSON component report. The
// package itself is kept as an artifact, from the bytes already here: it may be deleted at
// DocuMine (Finish) before anyone reads the artifact again.
func readPackage(data []byte, dl DownloadShape) (vendors.Result, error) {
	var (
		r     vendors.Result
		err   error
		name  = "result-package.json"
		ctype = "application/json"
	)
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")) || bytes.HasPrefix(data, []byte("PK\x05\x06")):
		name, ctype = "result-package.zip", "application/zip"
		r, err = readZIP(data, dl)
	case json.Valid(data):
		r.Fields, err = ComponentFields(data)
		r.Text, r.Raw = textOf(data, dl.TextKey), json.RawMessage(data)
	default:
		err = errors.New("the result package is neither a ZIP nor JSON")
	}
	if err != nil {
		return vendors.Result{}, err
	}
	r.Artifacts = []vendors.Artifact{{Name: name, ContentType: ctype,
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}}
	return r, nil
}

// readZIP reads a package ZIP: every *.json entry is a component report (fields, text at
// TextKey, and its JSON in Raw under the entry's name), entries matching TextFiles are the
// text; the rest (PDFs, spreadsheets) stay in the artifact only. Unpacked content is bounded by
// MaxBytes, so a ZIP bomb is an error, not an exhausted memory.
func readZIP(data []byte, dl DownloadShape) (vendors.Result, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return vendors.Result{}, fmt.Errorf("the result package is not a readable ZIP: %w", err)
	}
	budget := int64(dl.MaxBytes)
	var (
		r     vendors.Result
		texts []string
		raws  = map[string]json.RawMessage{}
	)
	for _, f := range zr.File {
		base := path.Base(f.Name)
		isJSON := strings.HasSuffix(strings.ToLower(base), ".json")
		isText := dl.TextFiles != "" && matches(dl.TextFiles, base)
		if f.FileInfo().IsDir() || (!isJSON && !isText) {
			continue
		}
		content, err := unzipEntry(f, budget)
		if err != nil {
			return vendors.Result{}, err
		}
		budget -= int64(len(content))
		if isText {
			texts = append(texts, string(content))
			continue
		}
		fields, err := ComponentFields(content)
		if err != nil {
			return vendors.Result{}, fmt.Errorf("package entry %s: %w", f.Name, err)
		}
		r.Fields = append(r.Fields, fields...)
		if t := textOf(content, dl.TextKey); t != "" {
			texts = append(texts, t)
		}
		raws[f.Name] = json.RawMessage(content)
	}
	r.Text = strings.Join(texts, "\n\n")
	raw, err := json.Marshal(raws)
	if err != nil {
		return vendors.Result{}, err
	}
	r.Raw = raw
	return r, nil
}

func matches(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

func unzipEntry(f *zip.File, budget int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("package entry %s: %w", f.Name, err)
	}
	defer rc.Close()
	content, err := io.ReadAll(io.LimitReader(rc, budget+1))
	if err != nil {
		return nil, fmt.Errorf("package entry %s: %w", f.Name, err)
	}
	if int64(len(content)) > budget {
		return nil, fmt.Errorf("the result package unpacks to more than %d bytes (api.package.download.max_bytes)", budget)
	}
	return content, nil
}

// Finish deletes the file's result package once its result is stored (package mode, with a
// delete path); a document completed elsewhere has nothing remembered here and nothing to do.
func (c *Client) Finish(ctx context.Context, ref string) error {
	if c.api.ResultMode != ResultPackage {
		return nil
	}
	id := c.packages.forget(ref)
	del := c.api.Package.Delete
	if id == "" || del.Path == "" {
		return nil
	}
	res, err := c.caller.Do(ctx, "package-delete", c.request(del, ref, id, nil, "application/json"))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return res.Body.Close()
}

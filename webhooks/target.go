package webhooks

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenTarget is returned when a subscription's URL resolves to an address it may not
// reach (loopback, private, link-local…) without allow_private_targets.
var ErrForbiddenTarget = errors.New("target address not allowed")

// forbidden are the ranges a webhook may not reach unless the subscription allows private
// targets: a URL from a configuration (or a DNS answer that changes after it was checked) must
// not become a way into the network ingest runs in.
var forbidden = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",         // "this network", unspecified
		"10.0.0.0/8",        // private
		"100.64.0.0/10",     // carrier-grade NAT
		"127.0.0.0/8",       // loopback
		"169.254.0.0/16",    // link-local (cloud metadata services live here)
		"172.16.0.0/12",     // private
		"192.0.0.0/24",      // IETF protocol assignments
		"192.168.0.0/16",    // private
		"198.18.0.0/15",     // benchmarking
		"224.0.0.0/4",       // multicast
		"240.0.0.0/4",       // reserved, broadcast
		"::/128", "::1/128", // unspecified, loopback
		"64:ff9b::/96", // NAT64: would reach IPv4 addresses through a translator
		"fc00::/7",     // unique local
		"fe80::/10",    // link-local
		"ff00::/8",     // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// allowedIP reports whether a webhook may connect to ip.
func allowedIP(ip netip.Addr) bool {
	ip = ip.Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	for _, p := range forbidden {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guard is a net.Dialer Control function: it runs after DNS resolution, on the address actually
// dialled, so a name that resolved to a public address when it was checked and to 127.0.0.1 now
// (DNS rebinding) is still refused.
func guard(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrForbiddenTarget, address)
	}
	if !allowedIP(ap.Addr()) {
		return fmt.Errorf("%w: %s is a loopback, private, link-local or otherwise internal address (set allow_private_targets: true to deliver there)",
			ErrForbiddenTarget, ap.Addr())
	}
	return nil
}

// newClient returns the HTTP client of one subscription: its own connection pool (a slow
// receiver does not take connections from others), the attempt timeout, certificates verified,
// no proxy from the environment (it would connect for us, past the address check), and redirects
// not followed (a 3xx is a failed attempt: a receiver must give its final URL).
func newClient(timeout time.Duration, allowPrivate bool, maxConns int) *http.Client {
	d := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = guard
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   min(timeout, 10*time.Second),
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

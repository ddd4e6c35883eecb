package service

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/config"
)

// Runtime is what a running service leaves in data_dir/runtime.json so that the CLI (ingest tail,
// status, submit) finds it without flags, even when the embedded NATS had to take another port.
type Runtime struct {
	PID     int       `json:"pid"`
	NATSURL string    `json:"nats_url"`
	HTTPURL string    `json:"http_url"`
	Started time.Time `json:"started"`
}

const (
	runtimeFile = "runtime.json"
	apiKeyFile  = "api-key"
	lockFile    = "lock"
)

// lockDataDir takes data_dir for this process, before anything in it is touched: a second ingest
// on the same data_dir would open the same embedded NATS store and take over runtime.json (and
// remove it when it stops). The lock is an flock on data_dir/lock: the system drops it when the
// process ends, however it ends, so a kill -9 leaves no stale lock. It also finds a data_dir that
// cannot be written at once, rather than when the embedded NATS gives up on it.
func lockDataDir(dir string) (*os.File, error) {
	probe, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return nil, fmt.Errorf("data_dir %s cannot be written (%v); ingest keeps its event store, keys and runtime file there: choose a directory it may write", dir, errors.Unwrap(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s cannot be locked: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 64))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data_dir %s is in use by another ingest (pid %s); give each instance its own data_dir", dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("data_dir %s cannot be locked: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func writeRuntime(dir string, rt Runtime) error {
	b, _ := json.MarshalIndent(rt, "", "  ")
	tmp := filepath.Join(dir, runtimeFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", runtimeFile, err)
	}
	return os.Rename(tmp, filepath.Join(dir, runtimeFile))
}

func removeRuntime(dir string) {
	path := filepath.Join(dir, runtimeFile)
	// Only our own: a second instance that failed to start must not remove the first one's file.
	if rt, err := readRuntime(dir); err == nil && rt.PID == os.Getpid() {
		_ = os.Remove(path)
	}
}

func readRuntime(dir string) (Runtime, error) {
	b, err := os.ReadFile(filepath.Join(dir, runtimeFile))
	if err != nil {
		return Runtime{}, err
	}
	var rt Runtime
	if err := json.Unmarshal(b, &rt); err != nil {
		return Runtime{}, fmt.Errorf("%s is damaged: %w", filepath.Join(dir, runtimeFile), err)
	}
	return rt, nil
}

// Endpoints are where the CLI reaches a service.
type Endpoints struct {
	NATSURL string
	HTTPURL string
	APIKey  string
}

// Discover finds the service that cfg describes: its runtime file when it runs (that has the
// port the embedded NATS really took), else the configured addresses.
func Discover(cfg config.Config) (Endpoints, error) {
	ep := Endpoints{NATSURL: cfg.NATS.URL, HTTPURL: "http://" + dialable(cfg.HTTP.Listen)}
	rt, err := readRuntime(cfg.DataDir)
	switch {
	case err == nil && alive(rt.PID):
		if ep.NATSURL == "" {
			ep.NATSURL = rt.NATSURL
		}
		ep.HTTPURL = rt.HTTPURL
	case ep.NATSURL == "":
		where := filepath.Join(cfg.DataDir, runtimeFile)
		if err == nil {
			return ep, fmt.Errorf("ingest is not running (%s names pid %d, which has exited); start it with `ingest serve`", where, rt.PID)
		}
		return ep, fmt.Errorf("ingest is not running (no %s); start it with `ingest serve` using the same config and data_dir", where)
	}
	key, err := readAPIKey(cfg)
	if err != nil {
		return ep, err
	}
	ep.APIKey = key
	return ep, nil
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// dialable turns a listen address into one a client can dial: a wildcard host becomes 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// apiKeys returns the configured keys, or the generated one: a fresh install is never open.
func apiKeys(cfg config.Config, log *slog.Logger) ([]string, error) {
	if len(cfg.HTTP.APIKeys) > 0 {
		return cfg.HTTP.APIKeys, nil
	}
	path := filepath.Join(cfg.DataDir, apiKeyFile)
	if key, err := readKeyFile(path); err == nil {
		log.Info("no http.api_keys configured; using the generated key", "file", path)
		return []string{key}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	key := hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write the generated API key: %w", err)
	}
	log.Warn("no http.api_keys configured; generated an API key (send it as Authorization: Bearer <key>)", "file", path)
	return []string{key}, nil
}

func readAPIKey(cfg config.Config) (string, error) {
	if len(cfg.HTTP.APIKeys) > 0 {
		return cfg.HTTP.APIKeys[0], nil
	}
	key, err := readKeyFile(filepath.Join(cfg.DataDir, apiKeyFile))
	if err != nil {
		return "", fmt.Errorf("no API key: http.api_keys is empty and %w", err)
	}
	return key, nil
}

func readKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if len(key) < 16 {
		return "", fmt.Errorf("%s holds no usable key (delete it to have a new one generated)", path)
	}
	return key, nil
}

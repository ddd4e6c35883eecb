// Package testservers starts real servers for tests — a throw-away Dovecot (IMAP) and rclone
// serving a folder over WebDAV — in temporary directories on free loopback ports, stopped at the
// test's cleanup. Without the program installed the test is skipped with a loud message, or fails
// when INGEST_REQUIRE_SERVERS is set (CI sets it: there they must run).
package testservers

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// DovecotBin is where Debian's dovecot-imapd puts Dovecot.
const DovecotBin = "/usr/sbin/dovecot"

// Dovecot is a throw-away Dovecot: its own configuration, passwd-file, Maildir and runtime
// directories in a temporary directory, listening on a free port of 127.0.0.1 without TLS, run in
// the foreground.
type Dovecot struct {
	addr       string
	dir        string
	user, pass string
}

// DovecotOptions configure a Dovecot.
type DovecotOptions struct {
	User, Pass string // the one mail account
	// Capability, when set, replaces what Dovecot announces after login (to play a server
	// without MOVE or UIDPLUS).
	Capability string
}

var dovecotConf = template.Must(template.New("conf").Parse(`# throw-away test server
base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
log_path = {{.Dir}}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {{.UID}}
first_valid_gid = {{.GID}}
{{- if .User}}
default_internal_user = {{.User}}
default_internal_group = {{.Group}}
default_login_user = {{.User}}
{{- end}}
{{- if .Capability}}
imap_capability = {{.Capability}}
{{- end}}
passdb {
  driver = passwd-file
  args = scheme=PLAIN {{.Dir}}/passwd
}
userdb {
  driver = static
  args = uid={{.UID}} gid={{.GID}} home={{.Dir}}/home/%u
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = {{.Port}}
  }
  inet_listener imaps {
    port = 0
  }
}
`))

type dovecotConfData struct {
	Dir, User, Group, Capability string
	UID, GID, Port               int
}

// Require skips t (loudly), or fails it where INGEST_REQUIRE_SERVERS is set, when bin is missing.
func Require(t testing.TB, bin, what, pkg string) {
	t.Helper()
	if _, err := os.Stat(bin); err == nil {
		return
	}
	msg := "\n\n!!! SKIPPING: " + bin + " is not installed.\n" +
		"!!! This test runs against " + what + "; CI runs it. Install it with:\n" +
		"!!!   apt-get install " + pkg + "\n\n"
	if os.Getenv("INGEST_REQUIRE_SERVERS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// StartDovecot starts one and waits until it takes a login.
func StartDovecot(t testing.TB, opt DovecotOptions) *Dovecot {
	t.Helper()
	Require(t, DovecotBin, "a real IMAP server (Dovecot)", "dovecot-imapd")
	// Not t.TempDir: Dovecot's mail processes must reach the Maildir, and as root they run as
	// the "mail" user (Dovecot refuses to access mail as root), which cannot enter a 0700 test
	// directory.
	dir, err := os.MkdirTemp("", "ingest-dovecot-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := &dovecotConfData{Dir: dir, UID: os.Getuid(), GID: os.Getgid(), Capability: opt.Capability}
	if os.Getuid() == 0 {
		mail, err := user.Lookup("mail")
		if err != nil {
			t.Fatalf("running as root, Dovecot needs the system user \"mail\" to own the test Maildir: %v", err)
		}
		data.UID, _ = strconv.Atoi(mail.Uid)
		data.GID, _ = strconv.Atoi(mail.Gid)
	} else {
		// Not root: every Dovecot process runs as us.
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(me.Gid)
		if err != nil {
			t.Fatal(err)
		}
		data.User, data.Group = me.Username, g.Name
	}
	for _, d := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "home"), data.UID, data.GID); err != nil {
		t.Fatal(err)
	}
	passwd := fmt.Sprintf("%s:{PLAIN}%s::::::\n", opt.User, opt.Pass)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	// The port is picked free and then bound by Dovecot: another test may take it in between, so
	// a Dovecot that cannot bind is started again on another one.
	for attempt := 1; ; attempt++ {
		data.Port = FreePort(t)
		d, ok := runDovecot(t, dir, data, opt)
		if ok {
			return d
		}
		if attempt == 3 || !strings.Contains(d.Log(), "Address already in use") {
			t.Fatalf("dovecot exited:\n%s", d.Log())
		}
	}
}

func runDovecot(t testing.TB, dir string, data *dovecotConfData, opt DovecotOptions) (*Dovecot, bool) {
	t.Helper()
	var conf bytes.Buffer
	if err := dovecotConf.Execute(&conf, data); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(DovecotBin, "-F", "-c", confPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its children go with it at cleanup
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	d := &Dovecot{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(data.Port)), dir: dir, user: opt.User, pass: opt.Pass}

	// Ready when a login works (the first greeting may still say it waits for the auth process).
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return d, false
		default:
		}
		if c, err := imapclient.DialInsecure(d.addr, nil); err == nil {
			ok := c.Login(opt.User, opt.Pass).Wait() == nil
			c.Close()
			if ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not take a login within 15 s:\n%s", d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	return d, true
}

// Log is Dovecot's output and log.
func (d *Dovecot) Log() string {
	var all []byte
	for _, f := range []string{"stdout.log", "dovecot.log"} {
		b, _ := os.ReadFile(filepath.Join(d.dir, f))
		all = append(all, b...)
	}
	return string(all)
}

// Addr is host:port.
func (d *Dovecot) Addr() string { return d.addr }

// Login opens a logged-in connection; close it.
func (d *Dovecot) Login(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(d.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(d.user, d.pass).Wait(); err != nil {
		c.Close()
		t.Fatalf("log in: %v", err)
	}
	return c
}

// Append APPENDs raws to mailbox over one connection, with flags, creating the mailbox if needed.
func (d *Dovecot) Append(t testing.TB, mailbox string, flags []goimap.Flag, raws ...[]byte) {
	t.Helper()
	c := d.Login(t)
	defer c.Close()
	if mailbox != "INBOX" {
		if err := c.Create(mailbox, nil).Wait(); err != nil && !strings.Contains(err.Error(), "ALREADYEXISTS") {
			t.Fatal(err)
		}
	}
	for _, raw := range raws {
		cmd := c.Append(mailbox, int64(len(raw)), &goimap.AppendOptions{Flags: flags, Time: time.Now()})
		if _, err := cmd.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// FreePort is a port of 127.0.0.1 nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

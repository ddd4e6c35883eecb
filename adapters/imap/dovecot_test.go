package imap_test

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

	"github.com/ingest-dev/ingest/events/eventstest"
)

const dovecotBin = "/usr/sbin/dovecot"

// dovecot is a throw-away Dovecot: its own configuration, passwd-file, Maildir and runtime
// directories in a temporary directory, listening on a free port of 127.0.0.1 without TLS, run
// in the foreground and stopped at cleanup.
type dovecot struct {
	addr string
	dir  string
}

type dovecotOptions struct {
	// capability, when set, replaces what Dovecot announces after login, to play a server
	// without MOVE or UIDPLUS.
	capability string
}

// dovecotCapability is what Dovecot 2.3 announces after login.
const dovecotCapability = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES " +
	"THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS " +
	"LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY " +
	"MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+"

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

// startDovecot starts one. Without Dovecot installed the test is skipped, loudly, unless
// INGEST_REQUIRE_SERVERS is set (CI), where it fails.
func startDovecot(t testing.TB, opt dovecotOptions) *dovecot {
	t.Helper()
	if _, err := os.Stat(dovecotBin); err != nil {
		msg := "\n\n!!! SKIPPING: Dovecot is not installed (" + dovecotBin + ").\n" +
			"!!! This test proves the IMAP watcher against a real IMAP server; CI runs it. Install it with:\n" +
			"!!!   apt-get install dovecot-imapd\n\n"
		if os.Getenv("INGEST_REQUIRE_SERVERS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Not t.TempDir: Dovecot's mail processes must reach the Maildir, and as root they run as
	// the "mail" user (Dovecot refuses to access mail as root), which cannot enter a 0700 test
	// directory.
	dir, err := os.MkdirTemp("", "ingest-dovecot-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := &dovecotConfData{Dir: dir, UID: os.Getuid(), GID: os.Getgid(), Capability: opt.capability}
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
	passwd := fmt.Sprintf("%s:{PLAIN}%s::::::\n", testUser, testPass)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	// The port is picked free and then bound by Dovecot: another test may take it in between, so
	// a Dovecot that cannot bind is started again on another one.
	for attempt := 1; ; attempt++ {
		data.Port = freePort(t)
		d, ok := runDovecot(t, dir, data)
		if ok {
			return d
		}
		if attempt == 3 || !strings.Contains(d.log(), "Address already in use") {
			t.Fatalf("dovecot exited:\n%s", d.log())
		}
	}
}

// runDovecot starts Dovecot with a configuration from data and waits until it takes a login;
// false when it exited first.
func runDovecot(t testing.TB, dir string, data *dovecotConfData) (*dovecot, bool) {
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
	cmd := exec.Command(dovecotBin, "-F", "-c", confPath)
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
	d := &dovecot{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(data.Port)), dir: dir}

	// Ready when a login works (the first greeting may still say it waits for the auth process).
	gone := false
	eventstest.WaitFor(t, 15*time.Second, "dovecot to accept a login", func() bool {
		select {
		case <-exited:
			gone = true
			return true
		default:
		}
		c, err := imapclient.DialInsecure(d.addr, nil)
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Login(testUser, testPass).Wait() == nil
	})
	if gone {
		return d, false
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.log())
		}
	})
	return d, true
}

func (d *dovecot) log() string {
	var all []byte
	for _, f := range []string{"stdout.log", "dovecot.log"} {
		b, _ := os.ReadFile(filepath.Join(d.dir, f))
		all = append(all, b...)
	}
	return string(all)
}

func (d *dovecot) address() string { return d.addr }

func (d *dovecot) deliver(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag) {
	t.Helper()
	d.appendFlagged(t, mailbox, flags, raw)
}

// appendMails APPENDs raws to mailbox over one connection, creating the mailbox if needed.
func (d *dovecot) appendMails(t testing.TB, mailbox string, raws ...[]byte) {
	t.Helper()
	d.appendFlagged(t, mailbox, nil, raws...)
}

func (d *dovecot) appendFlagged(t testing.TB, mailbox string, flags []goimap.Flag, raws ...[]byte) {
	t.Helper()
	c := login(t, d.addr, testUser, testPass)
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

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

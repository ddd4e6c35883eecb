//go:build unix

package webdav

import (
	"io/fs"
	"syscall"
)

// inode is a file's inode number: a file id that survives renames, as Nextcloud's oc:fileid does.
func inode(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Ino), true
}

//go:build !unix

package webdav

import "io/fs"

// inode is not available here: the file-id tests run without ids.
func inode(fs.FileInfo) (uint64, bool) { return 0, false }

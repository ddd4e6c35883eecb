// Package webdav watches a WebDAV folder (Nextcloud, ownCloud, SharePoint gateways, Apache
// mod_dav, rclone serve, …) and turns every file that lands in it into a document: the file is
// streamed into the Object Store through intake, announced as a received event, and then moved
// away (into "processed/"), deleted or kept, as configured.
//
// # Client
//
// The WebDAV client is net/http plus encoding/xml, on purpose. emersion/go-webdav hides HTTP
// status codes inside an unexported error type (so a 412 on MOVE cannot be told from a 500),
// strips the quotes from ETags and cannot ask for custom properties such as Nextcloud's
// oc:fileid; studio-b12/gowebdav has no context.Context (no cancellation, one timeout for a whole
// transfer), its default auto-auth tees every body into memory, and it cannot ask for oc:fileid
// either. What the watcher needs is small: PROPFIND (Depth 0 and 1) with a chosen property list,
// a streamed GET, MOVE with Overwrite: F, MKCOL and DELETE.
//
// # Listing and change detection
//
// Each collection is listed with PROPFIND Depth 1; with Recursive the watcher walks subfolders
// itself, because many servers refuse Depth infinity. Hrefs are resolved whatever form the
// server uses (absolute URL, absolute path, relative; percent-encoded or, wrongly, not) and every
// request URL is built from the configured URL plus the decoded path, so credentials never go to a
// host a listing names. A listing is bounded (MaxListingBytes, and 1 MiB per entry), refuses
// DTDs, and encoding/xml expands no custom entities, so a hostile server cannot exhaust memory.
//
// Polls are cheap where the server allows it: on servers whose collection ETags change whenever
// anything below them changes (Nextcloud, ownCloud), a poll is one PROPFIND Depth 0 of the folder
// when nothing moved, and descends only into collections whose ETag moved. Servers without
// collection ETags (x/net/webdav, rclone) are listed fully every poll. Whether a server's ETags
// really propagate is checked, not assumed: every tenth poll lists everything, and a collection
// whose ETag stayed while its content changed (seen in that listing, or as a 412 on a GET of a
// file its unchanged ETag vouched for) marks the server as non-propagating for good.
//
// rclone serve webdav (1.60) gives collections no ETag at all, keeps a file that is being
// uploaded out of listings, and holds PROPFIND answers on the folder until the upload ends: a
// poll during a long upload times out (RequestTimeout) and is retried. Serving a local folder,
// it caches directory listings (--dir-cache-time, 5 min): files put there behind its back show
// up late.
//
// # Stability
//
// A file is taken only when two consecutive listings showed the same size and ETag and it is
// older than MinAge (by getlastmodified, or by when this version was first seen when the server
// does not say). The GET carries If-Match with the listed ETag, so a file that changed since is
// not read (412) but watched again; without an ETag the bytes read must match the listed size.
// A writer that pauses for longer than a poll interval and MinAge together can still be taken
// early: give such clients a temporary name (*.part) or raise MinAge. Names matching SkipPatterns (temporary files: *.part, ~$*, *.tmp, dot-files,
// *.crdownload) are never taken. A zero-byte file waits: many clients create the file first and
// write it afterwards. It "ages out" when it has stayed empty for EmptyGrace (10 minutes): then it
// is rejected as empty (and moved to MoveFailed when set), so it does not sit there unexplained.
//
// # Exactly once
//
// A file's document id is derived from (source name, identity, version), the identity being
// oc:fileid when the server has it (stable across renames) and the path otherwise, the version its
// ETag. The same file version therefore always gets the same id: if a crash falls between the
// event's PubAck and the bookkeeping, the next run finds the document already announced and
// publishes nothing. After the PubAck the watcher records (identity, version) in the KV bucket
// <namespace>-webdav-seen, then runs the post-action; the record is removed once the file has left
// the folder (moved or deleted) and kept while the file stays (After "keep", or a rejected file
// with no MoveFailed). A file that stays and later changes (a new ETag) is a new version: it is
// ingested again only with ReingestOnChange.
package webdav

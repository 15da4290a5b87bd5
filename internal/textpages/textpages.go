// Package textpages keeps the executable's read-only pages from being
// mapped 2 MB at a time.
//
// On kernels whose page cache holds large folios (ext4 and xfs since 6.x),
// a fault anywhere in a 2 MB-aligned stretch of the binary's code or
// read-only data can map the whole stretch with one PMD, and every page of
// it then counts in the process's RSS although the process never touched
// it. Package init functions are spread over the whole text, so a Go
// server's RSS ends up holding nearly the whole binary (33 MB of a 47 MB
// file for vectabase serve). Release marks those mappings MADV_NOHUGEPAGE,
// so later faults map 4 KB pages (with the kernel's usual fault-around),
// and drops the mappings made so far with MADV_DONTNEED. The pages stay in
// the page cache, shared with every other process running the binary; only
// this process's mapping of pages it does not use goes away, and a page it
// does use comes back on the next touch from the cache, without I/O.
//
// Only mappings of the executable that are read-only in the file (no
// writable PT_LOAD segment, no RELRO page) are touched: dropping a private
// page the process wrote to would lose the write.
package textpages

// Stats says what Release did.
type Stats struct {
	Ranges int   // address ranges advised
	Bytes  int64 // bytes advised
}

package textpages

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release advises the kernel as the package comment says. It is safe to
// call at any time and more than once; an error leaves the mappings as
// they were or partly advised, which is harmless.
func Release() (Stats, error) {
	// The running binary's own inode, even if its path has since been
	// replaced or removed (an upgrade in place renames a new file over it).
	const exe = "/proc/self/exe"
	ranges, err := readOnlyRanges(exe)
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	for _, r := range ranges {
		if err := madvise(r, unix.MADV_NOHUGEPAGE); err != nil {
			return st, fmt.Errorf("madvise nohugepage %#x-%#x: %w", r.start, r.end, err)
		}
		if err := madvise(r, unix.MADV_DONTNEED); err != nil {
			return st, fmt.Errorf("madvise dontneed %#x-%#x: %w", r.start, r.end, err)
		}
		st.Ranges++
		st.Bytes += int64(r.end - r.start)
	}
	return st, nil
}

type span struct{ start, end uintptr }

// madvise advises on an address range of the process's own mappings. It
// takes the range as numbers, as the kernel does: the memory is never read
// or written through it.
func madvise(r span, advice int) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, uintptr(advice)); e != 0 {
		return e
	}
	return nil
}

// readOnlyRanges is the page-aligned address ranges of the executable's
// non-writable PT_LOAD segments, less every page that shares a page with a
// writable segment, clipped to what /proc/self/maps shows mapped read-only
// from the file.
func readOnlyRanges(exe string) ([]span, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	var ro, rw []span
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD && p.Type != elf.PT_GNU_RELRO {
			continue
		}
		s := span{uintptr(p.Vaddr), uintptr(p.Vaddr + p.Memsz)}
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_W == 0 {
			ro = append(ro, s)
		} else {
			rw = append(rw, span{s.start &^ (page - 1), (s.end + page - 1) &^ (page - 1)})
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return nil, err
	}
	maps, err := exeMappings(st.Dev, st.Ino)
	if err != nil {
		return nil, err
	}
	if len(maps) == 0 {
		return nil, nil
	}
	// The load bias: zero for a non-PIE executable; for PIE, where the
	// mapping of file offset 0 landed.
	var bias uintptr
	if f.Type == elf.ET_DYN {
		for _, m := range maps {
			if m.off == 0 {
				bias = m.start
				break
			}
		}
		if bias == 0 {
			return nil, nil
		}
	}
	var out []span
	for _, s := range ro {
		start := (s.start + bias + page - 1) &^ (page - 1)
		end := (s.end + bias) &^ (page - 1)
		for _, w := range rw {
			ws, we := w.start+bias, w.end+bias
			if ws < end && we > start {
				// Keep the part before the writable pages; segments are
				// ordered, so nothing read-only follows them here.
				end = min(end, ws)
				if start >= end {
					break
				}
			}
		}
		for _, m := range maps {
			if m.writable {
				continue
			}
			a, b := max(start, m.start), min(end, m.end)
			if a < b {
				out = append(out, span{a, b})
			}
		}
	}
	return out, nil
}

type mapping struct {
	start, end uintptr
	off        uint64
	writable   bool
}

// exeMappings is the lines of /proc/self/maps that map the file with
// device dev and inode ino: the executable, matched by inode rather than by
// path, which the kernel marks " (deleted)" once the file is replaced.
func exeMappings(dev, ino uint64) ([]mapping, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00401000 r--p 00000000 fd:01 1234   /path/to/exe
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != strconv.FormatUint(ino, 10) {
			continue
		}
		major, minor, ok1 := hexPair(fields[3], ":")
		start, end, ok2 := hexPair(fields[0], "-")
		off, err := strconv.ParseUint(fields[2], 16, 64)
		if !ok1 || !ok2 || err != nil || unix.Mkdev(uint32(major), uint32(minor)) != dev {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end), off, strings.Contains(fields[1], "w")})
	}
	return out, sc.Err()
}

// hexPair parses two hexadecimal numbers joined by sep, as maps writes an
// address range ("00400000-00401000") and a device ("fd:01").
func hexPair(s, sep string) (a, b uint64, ok bool) {
	x, y, found := strings.Cut(s, sep)
	a, err1 := strconv.ParseUint(x, 16, 64)
	b, err2 := strconv.ParseUint(y, 16, 64)
	return a, b, found && err1 == nil && err2 == nil
}

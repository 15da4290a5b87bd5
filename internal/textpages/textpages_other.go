//go:build !linux

package textpages

// Release does nothing on systems other than Linux.
func Release() (Stats, error) { return Stats{}, nil }

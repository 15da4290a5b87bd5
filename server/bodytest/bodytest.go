// Package bodytest builds hostile request bodies for tests and the
// bench/hostile harness: compression bombs that are tiny on the wire and
// huge once decoded, in each coding the server accepts. They are built
// without ever holding the decoded data: gzip as repeated members (RFC
// 1952 allows several; a reader decodes them as one stream), zlib as one
// stream of repeated deflate blocks, brotli by compressing a reader of
// zeros.
package bodytest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"io"

	"github.com/andybalholm/brotli"
)

const chunk = 1 << 20

// zeroChunkGzip is one gzip member holding 1 MiB of zeros.
func zeroChunkGzip() []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write(make([]byte, chunk))
	_ = zw.Close()
	return b.Bytes()
}

// Gzip returns a gzip body that decodes to about size zeros (size rounded
// up to whole MiB).
func Gzip(size int64) []byte {
	member := zeroChunkGzip()
	n := (size + chunk - 1) / chunk
	out := make([]byte, 0, int64(len(member))*n)
	for range n {
		out = append(out, member...)
	}
	return out
}

// GzipOf gzips b.
func GzipOf(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// NestedGzip is Gzip(size) gzipped again layers-1 times: each layer shrinks
// the last one's repetition, so three layers of 4 GiB take a few hundred
// bytes. Decoding it needs Content-Encoding: gzip, gzip, ... (layers times).
func NestedGzip(layers int, size int64) []byte {
	b := Gzip(size)
	for i := 1; i < layers; i++ {
		b = GzipOf(b)
	}
	return b
}

// Deflate returns an HTTP "deflate" (zlib, RFC 1950) body that decodes to
// about size zeros (rounded up to whole MiB): one stream whose deflate
// blocks for 1 MiB of zeros repeat, since every block refers only to
// zeros before it.
func Deflate(size int64) []byte {
	var blk bytes.Buffer
	fw, _ := flate.NewWriter(&blk, flate.BestCompression)
	_, _ = fw.Write(make([]byte, chunk))
	_ = fw.Flush() // ends on a byte boundary, block not final
	block := blk.Bytes()
	n := (size + chunk - 1) / chunk
	out := make([]byte, 0, 2+int64(len(block))*n+16)
	out = append(out, 0x78, 0xda) // zlib header: deflate, 32 KiB window, best compression
	for range n {
		out = append(out, block...)
	}
	out = append(out, 0x03, 0x00) // final empty fixed-Huffman block
	// Adler-32 of n MiB of zeros: a stays 1, b adds 1 per byte.
	total := uint64(n) * chunk
	a, b := uint32(1), uint32(total%65521)
	return binary.BigEndian.AppendUint32(out, b<<16|a)
}

// Brotli returns a brotli body that decodes to size zeros, written with
// window lgwin (10 to 24 bits).
func Brotli(size int64, lgwin int) []byte {
	var b bytes.Buffer
	bw := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 5, LGWin: lgwin})
	_, _ = io.Copy(bw, io.LimitReader(zeros{}, size))
	_ = bw.Close()
	return b.Bytes()
}

// BrotliOf compresses b with brotli's default window.
func BrotliOf(b []byte) []byte {
	var buf bytes.Buffer
	bw := brotli.NewWriter(&buf)
	_, _ = bw.Write(b)
	_ = bw.Close()
	return buf.Bytes()
}

// DeflateOf compresses b in the zlib format (HTTP's "deflate").
func DeflateOf(b []byte) []byte {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

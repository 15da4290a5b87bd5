package server

import (
	"bytes"
	"runtime"
	"testing"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/bodytest"
)

// TestDecodeBodyHoldsAtMostTheLimit: decoding a bomb allocates the limit
// plus the decoder's own state, however large the bomb decodes: bytes
// allocated are counted (not RSS, not time), so the check is exact on a
// busy machine. Not parallel: other tests' allocations would count.
func TestDecodeBodyHoldsAtMostTheLimit(t *testing.T) {
	const limit = 1 << 20
	cases := []struct {
		name  string
		cd    coding
		body  []byte
		state uint64 // the decoder's own buffers
	}{
		{"gzip 256 MiB", codingGzip, bodytest.Gzip(256 << 20), 128 << 10},
		{"deflate 256 MiB", codingDeflate, bodytest.Deflate(256 << 20), 128 << 10},
		// Brotli's ring buffer grows to its window (at most 4 MiB, see
		// maxBrotliWindowBits) whatever the limit.
		{"brotli 64 MiB", codingBrotli, bodytest.Brotli(64<<20, maxBrotliWindowBits), 4<<20 + 512<<10},
	}
	for _, tc := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := decodeBody(tc.cd, tc.body, limit)
		runtime.ReadMemStats(&after)
		if code := vectabase.ErrorCode(err); code != vectabase.EPAYLOADTOOLARGE {
			t.Errorf("%s: decodeBody err = %v, want PAYLOAD_TOO_LARGE", tc.name, err)
		}
		if got, bound := after.TotalAlloc-before.TotalAlloc, uint64(limit+1)+tc.state; got > bound {
			t.Errorf("%s: decoding allocated %d bytes, want at most %d (limit %d + decoder state)", tc.name, got, bound, limit)
		}
	}
}

func TestParseContentEncoding(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      []string
		want    coding
		wantErr string
	}{
		{nil, codingIdentity, ""},
		{[]string{""}, codingIdentity, ""},
		{[]string{"identity"}, codingIdentity, ""},
		{[]string{"gzip"}, codingGzip, ""},
		{[]string{" GZip "}, codingGzip, ""},
		{[]string{"x-gzip"}, codingGzip, ""},
		{[]string{"deflate"}, codingDeflate, ""},
		{[]string{"br"}, codingBrotli, ""},
		{[]string{"identity, br, identity"}, codingBrotli, ""},
		{[]string{"gzip, gzip"}, 0, vectabase.EUNSUPPORTEDMEDIA},
		{[]string{"gzip", "deflate"}, 0, vectabase.EUNSUPPORTEDMEDIA},
		{[]string{"zstd"}, 0, vectabase.EUNSUPPORTEDMEDIA},
		{[]string{"gzip;q=1"}, 0, vectabase.EUNSUPPORTEDMEDIA},
	}
	for _, tc := range cases {
		var vals [][]byte
		for _, v := range tc.in {
			vals = append(vals, []byte(v))
		}
		got, err := parseContentEncoding(vals)
		if tc.wantErr != "" {
			if vectabase.ErrorCode(err) != tc.wantErr {
				t.Errorf("parseContentEncoding(%q) err = %v, want %s", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseContentEncoding(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestBrotliWindowBits(t *testing.T) {
	t.Parallel()
	for lgwin := 10; lgwin <= 24; lgwin++ {
		b := bodytest.Brotli(100, lgwin)
		got, ok := brotliWindowBits(b)
		// The encoder may shrink the window for a tiny input; it never
		// grows it.
		if !ok || got > lgwin || got < 10 {
			t.Errorf("brotliWindowBits(lgwin %d) = %d, %v", lgwin, got, ok)
		}
	}
	if bits, _ := brotliWindowBits(bodytest.Brotli(1<<20, 24)); bits != 24 {
		t.Errorf("brotliWindowBits(1 MiB at lgwin 24) = %d, want 24", bits)
	}
}

// TestProperty20_DecodedBodyIsTheOriginalOrRefused claims: for any body,
// coding and limit, decoding the encoded body gives back exactly the
// original when it fits the limit, and PAYLOAD_TOO_LARGE (never a prefix,
// never more) when it does not. 100 iterations (rapid's default).
func TestProperty20_DecodedBodyIsTheOriginalOrRefused(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		limit := rapid.IntRange(0, 4096).Draw(t, "limit")
		// Repetitive bodies compress well, so some decode far past the
		// limit from a few bytes.
		unit := rapid.SliceOfN(rapid.Byte(), 1, 16).Draw(t, "unit")
		body := bytes.Repeat(unit, rapid.IntRange(0, 2*limit/len(unit)+2).Draw(t, "repeats"))
		cd := rapid.SampledFrom([]coding{codingIdentity, codingGzip, codingDeflate, codingBrotli}).Draw(t, "coding")
		var wire []byte
		switch cd {
		case codingGzip:
			wire = bodytest.GzipOf(body)
		case codingDeflate:
			wire = bodytest.DeflateOf(body)
		case codingBrotli:
			wire = bodytest.BrotliOf(body)
		default:
			wire = body
		}
		got, err := decodeBody(cd, wire, limit)
		if len(body) > limit {
			if vectabase.ErrorCode(err) != vectabase.EPAYLOADTOOLARGE {
				t.Fatalf("decodeBody(%s, %d bytes decoding to %d, limit %d) = %d bytes, %v; want PAYLOAD_TOO_LARGE", cd, len(wire), len(body), limit, len(got), err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("decodeBody(%s, %d bytes decoding to %d, limit %d) = %d bytes, %v; want the original", cd, len(wire), len(body), limit, len(got), err)
		}
	})
}

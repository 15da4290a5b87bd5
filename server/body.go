package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
)

// Request bodies are limited after decoding. Fiber's Ctx.Body decodes any
// Content-Encoding (up to three stacked) in full, with no cap, before a
// route could compare the result with its limit: a few hundred bytes of
// nested gzip become gigabytes. So the first middleware takes the
// Content-Encoding header off every request (no later c.Body call can
// decode anything), refuses codings it does not know or stacked codings
// with 415, and remembers the one coding; each route's limits handler then
// decodes the body through a reader that stops one byte past the route's
// limit, and answers 413 when it gets there.

// coding is a content coding the API accepts on request bodies.
type coding uint8

const (
	codingIdentity coding = iota
	codingGzip
	codingDeflate
	codingBrotli
)

func (c coding) String() string {
	switch c {
	case codingGzip:
		return "gzip"
	case codingDeflate:
		return "deflate"
	case codingBrotli:
		return "br"
	}
	return "identity"
}

// maxBrotliWindowBits bounds the window of brotli bodies. The decoder's
// ring buffer grows up to the window (16 MiB at brotli's largest, 24
// bits), whatever the route's limit; brotli's default window is 22 bits
// (4 MiB), which every encoder uses unless told otherwise.
const maxBrotliWindowBits = 22

var (
	errStackedCoding = vectabase.Errorf(vectabase.EUNSUPPORTEDMEDIA, "Content-Encoding: at most one coding (gzip, deflate or br) is accepted")
	errUnknownCoding = vectabase.Errorf(vectabase.EUNSUPPORTEDMEDIA, "Content-Encoding: only gzip, deflate and br are accepted")
)

// parseContentEncoding reads the request's Content-Encoding headers (all of
// them: several header lines are one comma-separated list) and returns its
// one coding. identity entries and empty ones are ignored; more than one
// other coding, or an unknown one, is UNSUPPORTED_MEDIA_TYPE.
func parseContentEncoding(values [][]byte) (coding, error) {
	found := codingIdentity
	n := 0
	for _, v := range values {
		for _, tok := range strings.Split(string(v), ",") {
			tok = strings.ToLower(strings.TrimSpace(tok))
			var c coding
			switch tok {
			case "", "identity":
				continue
			case "gzip", "x-gzip":
				c = codingGzip
			case "deflate":
				c = codingDeflate
			case "br":
				c = codingBrotli
			default:
				return codingIdentity, errUnknownCoding
			}
			n++
			if n > 1 {
				return codingIdentity, errStackedCoding
			}
			found = c
		}
	}
	return found, nil
}

// contentCodingMiddleware strips Content-Encoding from every request, so
// that Fiber never decodes a body itself, and records the coding for the
// route's limits handler. Bodies in an unsupported or stacked coding are
// refused here, before any route runs.
func contentCodingMiddleware(c *fiber.Ctx) error {
	h := &c.Request().Header
	var values [][]byte
	h.VisitAll(func(k, v []byte) {
		if strings.EqualFold(string(k), fiber.HeaderContentEncoding) {
			values = append(values, v)
		}
	})
	if len(values) == 0 {
		return c.Next()
	}
	cd, err := parseContentEncoding(values) // before Del: values point into the header
	h.Del(fiber.HeaderContentEncoding)
	if err != nil {
		return err
	}
	if cd != codingIdentity && len(c.Request().Body()) > 0 {
		c.Locals(localCoding, cd)
	}
	return c.Next()
}

// decodedBody makes the request's body its decoded form, at most limit
// bytes: PAYLOAD_TOO_LARGE past it (the decoder stops one byte after the
// limit, so no more than limit+1 decoded bytes are ever held), BAD_REQUEST
// when the body is not valid in its coding.
func decodedBody(c *fiber.Ctx, limit int) error {
	raw := c.Request().Body()
	cd, _ := c.Locals(localCoding).(coding)
	if cd == codingIdentity {
		if len(raw) > limit {
			return tooLarge(limit)
		}
		return nil
	}
	out, err := decodeBody(cd, raw, limit)
	if err != nil {
		return err
	}
	c.Locals(localCoding, codingIdentity)
	c.Request().SetBodyRaw(out)
	return nil
}

func tooLarge(limit int) error {
	return vectabase.Errorf(vectabase.EPAYLOADTOOLARGE, "request body is larger than %d bytes", limit)
}

var errCapped = errors.New("decoded body past the limit")

// decodeBody decodes raw from coding cd into a new slice of at most limit
// bytes. Its errors are PAYLOAD_TOO_LARGE (the decoded body passes limit)
// and BAD_REQUEST (raw is not valid cd).
func decodeBody(cd coding, raw []byte, limit int) ([]byte, error) {
	if limit < 0 {
		limit = 0
	}
	var r io.Reader
	var err error
	switch cd {
	case codingGzip:
		var zr *gzip.Reader
		zr, err = gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			defer zr.Close()
			r = zr
		}
	case codingDeflate:
		// HTTP's "deflate" is the zlib format (RFC 9110, 8.4.1.2).
		var zr io.ReadCloser
		zr, err = zlib.NewReader(bytes.NewReader(raw))
		if err == nil {
			defer zr.Close()
			r = zr
		}
	case codingBrotli:
		if bits, ok := brotliWindowBits(raw); ok && bits > maxBrotliWindowBits {
			return nil, vectabase.Errorf(vectabase.EPAYLOADTOOLARGE, "Content-Encoding br: the window is larger than %d bits", maxBrotliWindowBits)
		}
		r = brotli.NewReader(bytes.NewReader(raw))
	default:
		if len(raw) > limit {
			return nil, tooLarge(limit)
		}
		return raw, nil
	}
	if err != nil {
		return nil, vectabase.Errorf(vectabase.EBADREQUEST, "request body is not valid %s", cd)
	}
	out, err := readCapped(r, limit)
	switch {
	case errors.Is(err, errCapped):
		return nil, tooLarge(limit)
	case err != nil:
		return nil, vectabase.Errorf(vectabase.EBADREQUEST, "request body is not valid %s", cd)
	}
	return out, nil
}

// readCapped reads r to its end into one buffer of limit+1 bytes, so no
// more than that is ever held whatever r would give: errCapped when r
// holds more than limit bytes. (A large buffer's pages are only touched as
// the data fills them.) r's own errors, io.ErrUnexpectedEOF of a truncated
// stream included, are returned as they are.
func readCapped(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, limit+1)
	n, idle := 0, 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if idle = idle + 1; m > 0 {
			idle = 0
		} else if idle > 100 && err == nil {
			return nil, io.ErrNoProgress
		}
		if n > limit {
			return nil, errCapped
		}
		if errors.Is(err, io.EOF) {
			return buf[:n:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// brotliWindowBits reads the window size from a brotli stream's header
// (RFC 7932, 9.1): ok is false when raw is too short to say.
func brotliWindowBits(raw []byte) (bits int, ok bool) {
	if len(raw) == 0 {
		return 0, false
	}
	b := uint(raw[0])
	if len(raw) > 1 {
		b |= uint(raw[1]) << 8
	}
	if b&1 == 0 {
		return 16, true
	}
	if n := (b >> 1) & 7; n != 0 {
		return 17 + int(n), true
	}
	n := (b >> 4) & 7
	switch {
	case n == 1:
		return 30, true // large window: refused
	case n != 0:
		return 8 + int(n), true
	}
	return 17, true
}

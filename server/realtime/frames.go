package realtime

import (
	"encoding/binary"
	"sync"
)

// Events are framed once and the same bytes go to every client: a change
// fanned out to a thousand connections is encoded and framed once, not a
// thousand times, and queuing it allocates nothing per client. The writer
// of each connection sends whatever frames have queued up in one write
// (one system call and, on loopback or a LAN, one TCP segment for a burst
// of changes) instead of one write per message.
//
// A server's frames are never masked (RFC 6455 section 5.1) and this
// server negotiates no compression, so a text frame is a header of two to
// ten bytes and the payload. Control frames (ping, close, and the pongs
// the WebSocket library answers pings with) still go through the library:
// each of them, like each batch of data frames, is one Write on the
// connection, and Go's net.Conn never interleaves two Writes, so frames
// never mix.

// maxFrameHeader is the largest header of an unmasked frame.
const maxFrameHeader = 10

// textFrame returns payload as one final, unmasked WebSocket text frame.
func textFrame(payload []byte) []byte {
	n := len(payload)
	f := make([]byte, 0, maxFrameHeader+n)
	f = append(f, 0x80|0x1) // FIN, opcode text
	switch {
	case n < 126:
		f = append(f, byte(n))
	case n <= 0xFFFF:
		f = append(f, 126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	return append(f, payload...)
}

// maxCoalesce bounds one write of coalesced frames, so a client with a
// long queue still sees pings and close frames in good time and a batch
// buffer stays small.
const maxCoalesce = 64 << 10

// batchBufs holds the buffers batches are assembled in: only writers that
// are writing hold one, so a thousand idle connections hold none.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

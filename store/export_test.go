package store

import "time"

// Test hooks for the request-log spool (requestlogspool.go).

// SpoolRecord is one decoded spool record.
type SpoolRecord = spoolRow

// AppendSpoolRecord appends l's spool record, numbered seq, to buf.
func AppendSpoolRecord(buf []byte, seq uint64, l RequestLog) []byte {
	return appendSpoolRecord(buf, seq, l)
}

// DecodeSpool decodes a segment file's bytes.
func DecodeSpool(data []byte) ([]SpoolRecord, int) { return decodeSpool(data) }

// SpoolExt is a segment file's extension.
const SpoolExt = spoolExt

// Abandon makes w stop as a kill -9 would leave it: its spool files
// closed (their locks released) with nothing flushed. w must have been
// made with an Every longer than the test.
func (w *RequestLogWriter) Abandon() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.cur != nil {
		w.cur.f.Close()
		w.cur = nil
	}
	for _, s := range w.sealed {
		s.f.Close()
	}
	w.sealed = nil
	w.openAfter = time.Now().Add(time.Hour)
}

// ListProductsSQL is ListProducts' statement.
func ListProductsSQL(mine bool) string { return listProductsSQL(mine) }

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tcpFanout writes one message to each of n loopback TCP connections and
// waits until a child process has read it on all of them: the floor under
// any fan-out over TCP on this machine.
type tcpFanout struct {
	size   int
	sends  []chan []byte
	conns  []net.Conn
	seq    atomic.Uint64
	expect *expectations
	stop   func()
	pid    int // the readers' process
}

func startTCPFanout(ctx context.Context, n, size int) (*tcpFanout, error) {
	ch, err := startChild(ctx, "tcp")
	if err != nil {
		return nil, err
	}
	f := &tcpFanout{size: size, expect: newExpectations(), pid: ch.pid()}
	f.stop = func() {
		for _, c := range f.conns {
			c.Close()
		}
		for _, s := range f.sends {
			close(s)
		}
		ch.stop()
	}
	if _, err := fmt.Fprintf(ch.in, "%d %d\n", n, size); err != nil {
		f.stop()
		return nil, err
	}
	if !ch.lines.Scan() {
		f.stop()
		return nil, errors.New("tcp readers ended before they were ready")
	}
	addr, ok := strings.CutPrefix(ch.lines.Text(), "ready ")
	if !ok {
		f.stop()
		return nil, fmt.Errorf("tcp readers: %s", ch.lines.Text())
	}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			f.stop()
			return nil, err
		}
		send := make(chan []byte, 16)
		f.conns, f.sends = append(f.conns, c), append(f.sends, send)
		go func() {
			for m := range send {
				if _, err := c.Write(m); err != nil {
					return
				}
			}
		}()
	}
	go func() {
		for ch.lines.Scan() {
			f.expect.done(ch.lines.Text())
		}
	}()
	return f, nil
}

// send is one event: the same message handed to every connection's
// writer, then the wait for the readers' report.
func (f *tcpFanout) send(ctx context.Context) error {
	n := f.seq.Add(1)
	m := make([]byte, f.size)
	binary.BigEndian.PutUint64(m, n)
	done := f.expect.expect(strconv.FormatUint(n, 10))
	for _, ch := range f.sends {
		ch <- m
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return errors.New("bare TCP message not read by every reader within 5 s")
	}
}

// runTCPReaders is the readers' process: "n size" on stdin, then it
// listens, says "ready addr", accepts n connections and prints each
// message's sequence number once all n have read it, until stdin closes.
func runTCPReaders(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	var n, size int
	if _, err := fmt.Fscanf(br, "%d %d\n", &n, &size); err != nil {
		return err
	}
	if n <= 0 || size < 8 {
		return errors.New("tcp readers: bad n or size")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	var outMu sync.Mutex
	say := func(s string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = io.WriteString(out, s+"\n")
	}
	say("ready " + ln.Addr().String())
	var mu sync.Mutex
	got := map[uint64]int{}
	for range n {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				seq := binary.BigEndian.Uint64(buf)
				mu.Lock()
				got[seq]++
				all := got[seq] == n
				if all {
					delete(got, seq)
				}
				mu.Unlock()
				if all {
					say(strconv.FormatUint(seq, 10))
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, br) // until the parent closes stdin
	return nil
}

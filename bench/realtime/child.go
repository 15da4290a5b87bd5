package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"time"
)

// child is this binary run in another role (-role NAME): the parent feeds
// it on stdin and it reports line by line on stdout. It exits when its
// stdin closes. Running the load generator in a process of its own
// measures its CPU apart from the server's.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func startChild(ctx context.Context, role string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-role", role)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &child{cmd: cmd, in: in, lines: bufio.NewScanner(out)}, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop closes the child's stdin and waits for it to exit, killing it
// after 5 s.
func (c *child) stop() {
	c.in.Close()
	waited := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-waited
	}
}

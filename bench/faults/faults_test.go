// Package faults is the fault suite of issue 18: real `vectabase serve`
// binaries (built once per run) on real PostgreSQL clusters, under a mixed
// workload (login, refresh, verify, check, secret reads and writes, store
// and product writes, realtime subscribers), while a fault is injected.
// Each scenario checks what a client sees (503 UNAVAILABLE with the
// contract's body, never a 500 or a hang past 5 s), how long the service
// takes to come back, that every write answered 2xx is in the database
// afterwards, and the server's RSS, goroutines and open files before and
// after. The table of figures is printed at the end.
//
//	go test ./bench/faults -v            # the short form CI runs (a few minutes)
//	go test ./bench/faults -v -long      # the long form: a 10-minute soak, more kill -9 moments
package faults

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestFault1_PostgresRestart restarts PostgreSQL under the workload, first
// with a fast shutdown, then with an immediate one (a crash for the
// clients: no goodbye on the connections).
func TestFault1_PostgresRestart(t *testing.T) {
	needBinary(t)
	c, dbURL := startCluster(t, nil)
	env := serverEnv(t, dbURL)
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)
	subs := startSubscribers(a, 2)
	defer subs.stop()

	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			w := startWorkload(a, 6, 150)
			time.Sleep(2 * time.Second)
			before := srv.vitals()
			if err := pgCtl(c, "stop", "-m", mode); err != nil {
				t.Fatal(err)
			}
			notReady := waitUntil(5*time.Second, func() bool { return !srv.ready() })
			if notReady < 0 {
				t.Errorf("/readyz still 200 5 s after PostgreSQL stopped")
			}
			time.Sleep(3 * time.Second) // the outage, under the workload
			if err := startPG(c); err != nil {
				t.Fatal(err)
			}
			back := waitUntil(30*time.Second, func() bool {
				an := a.do(context.Background(), "POST", "/api/stores", map[string]any{"name": "after " + mode}, nil)
				return an.status == 201 && srv.ready()
			})
			time.Sleep(2 * time.Second)
			st := w.stop()
			after := srv.vitals()
			acked, present := verifyAcked(t, dbURL, st)
			verdict := auditVerify(t, env)
			report("1 PostgreSQL restart ("+mode+")", st.errorsByKind(), fmt.Sprintf("%v", back.Round(10*time.Millisecond)),
				fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
				fmt.Sprintf("readyz false after %v; slowest answer %v; audit verify %s", notReady.Round(10*time.Millisecond), st.slowest.Round(time.Millisecond), verdict))
			if n := st.bad5xx(); n > 0 {
				t.Errorf("%d answers were 5xx other than 503 UNAVAILABLE (first: %s)\nserver's internal errors:\n%s", n, st.first500, srv.internalErrors(5))
			}
			if st.hangs > 0 {
				t.Errorf("%d answers took longer than 5 s (slowest %v)", st.hangs, st.slowest)
			}
			if back < 0 || back > 5*time.Second {
				t.Errorf("service back %v after the database (want within 5 s)", back)
			}
			if present != acked {
				t.Errorf("%d writes acknowledged, %d present", acked, present)
			}
		})
	}
	if n := subs.events.Load(); n == 0 {
		t.Errorf("realtime subscribers got no change events")
	}
}

// TestZZ_PrintTable prints the figures the scenarios reported.
func TestZZ_PrintTable(t *testing.T) {
	printTable(os.Stdout)
}

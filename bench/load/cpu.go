package load

import (
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// ProcessCPU is the user and system CPU time used so far by the running
// processes whose command name is comm (for example "postgres": the
// database's share of a run, which this process's own counters miss).
// Processes that exited are not counted, so take differences over
// intervals in which the server's processes stay up. Zero without /proc.
func ProcessCPU(comm string) time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks uint64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if name, t, ok := parseStat(string(raw)); ok && name == comm {
			ticks += t
		}
	}
	return time.Duration(ticks) * clockTick
}

// PIDsCPU is the user and system CPU time used so far by the processes
// pids that still run: for example the PostgreSQL backends serving one
// database (pg_stat_activity's pid), which leaves out the other clusters
// and databases of a shared machine that ProcessCPU("postgres") counts.
func PIDsCPU(pids []int) time.Duration {
	var ticks uint64
	for _, pid := range pids {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		if _, t, ok := parseStat(string(raw)); ok {
			ticks += t
		}
	}
	return time.Duration(ticks) * clockTick
}

// RSS is the resident set size of process pid in bytes, from
// /proc/<pid>/status (VmRSS); 0 without /proc.
func RSS(pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// parseStat returns the command name and the user plus system ticks of a
// /proc/<pid>/stat line.
func parseStat(s string) (comm string, ticks uint64, ok bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 > len(s) {
		return "", 0, false
	}
	// After "pid (comm) ": state, ppid, ... utime is field 14 of the
	// line, the 12th after the command.
	f := strings.Fields(s[end+2:])
	if len(f) < 13 {
		return "", 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return s[open+1 : end], u + st, true
}

// SelfCPU is the user and system CPU time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAvg is the machine's 1-, 5- and 15-minute load averages as
// /proc/loadavg gives them ("1.20 0.98 0.75"), for printing beside figures
// measured on a shared machine; "unknown" without /proc.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// CPUProfile starts a CPU profile of this process into path ("" profiles
// nothing) and returns what stops it and closes the file.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

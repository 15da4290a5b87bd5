package textpages

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// written is in the executable's writable data: Release must leave what the
// process wrote there alone.
var written = [4096]byte{1: 1}

func TestReleaseAdvisesOnlyReadOnlyMappingsOfTheExecutable(t *testing.T) {
	for i := range written {
		written[i] = byte(i)
	}
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if st.Ranges == 0 || st.Bytes < 1<<20 {
		t.Fatalf("Release = %+v, want the text and read-only data advised", st)
	}
	// Code and read-only data come back from the page cache on the next
	// touch: run the collector (it reads the pclntab) and a stack trace.
	runtime.GC()
	if buf := make([]byte, 1<<16); runtime.Stack(buf, true) == 0 {
		t.Fatal("no stack")
	}
	for i := range written {
		if written[i] != byte(i) {
			t.Fatalf("written[%d] = %d after Release: a writable page was dropped", i, written[i])
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	defer f.Close()
	var cur string
	var advised int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			cur = "" // a mapping's first line; only the executable's are checked
			if len(fields) >= 6 && strings.Join(fields[5:], " ") == exe {
				cur = fields[1]
			}
		case cur == "":
		case strings.HasPrefix(line, "FilePmdMapped:") && fields[1] != "0":
			t.Errorf("a %s mapping of the executable is still PMD-mapped: %s", cur, line)
		case strings.HasPrefix(line, "VmFlags:"):
			nh := strings.Contains(line, " nh")
			if strings.Contains(cur, "w") && nh {
				t.Errorf("a writable mapping was advised: %s", line)
			}
			if nh {
				advised++
			}
		}
	}
	if advised == 0 {
		t.Error("no mapping of the executable carries MADV_NOHUGEPAGE")
	}
}

// An upgrade renames a new binary over the running one: the process's own
// file then shows as "(deleted)" in its maps, and Release must still find
// its mappings (by inode) and not read the new file's headers.
func TestReleaseAfterTheBinaryWasReplaced(t *testing.T) {
	if os.Getenv("TEXTPAGES_CHILD") == "1" {
		exe, _ := os.Executable()
		if err := os.Remove(exe); err != nil {
			fmt.Println("remove:", err)
			os.Exit(3)
		}
		st, err := Release()
		if err != nil || st.Ranges == 0 {
			fmt.Printf("Release = %+v, %v\n", st, err)
			os.Exit(4)
		}
		runtime.GC()
		os.Exit(0)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "textpages.test")
	if err := os.WriteFile(copyPath, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.run=^TestReleaseAfterTheBinaryWasReplaced$")
	cmd.Env = append(os.Environ(), "TEXTPAGES_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

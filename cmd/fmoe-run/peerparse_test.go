package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// peerParse runs a function of scripts/peer/parse.sh (the parsers scripts/peer-bench.sh reads
// fmoe-run's reports with) and returns its output.
func peerParse(t *testing.T, call string) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: scripts/peer/parse.sh is bash")
	}
	out, err := exec.Command(bash, "-c", ". ../../scripts/peer/parse.sh && "+call).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", call, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestPeerParse: the peer benchmark's parsers read what fmoe-run prints today. A generate with
// --timing on the built-in model, its stderr parsed by timed_split and untimed_rate, gives the
// figures an independent reading of the same report gives: a change of the report's layout
// fails here, not in a device call that would print "-" for every fmoe figure.
func TestPeerParse(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	got := make(chan string)
	go func() { b, _ := io.ReadAll(r); got <- string(b) }()
	_, err = runApp(t, "", "generate", "--model", "$MODEL", "--ids", "1,2,3,4,5,6,7,8", "--tokens", "6", "--timing")
	os.Stderr = old
	w.Close()
	report := <-got
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "timing")
	if err := os.WriteFile(file, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	find := func(re string, group int) string {
		m := regexp.MustCompile(re).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("no %q in the report:\n%s", re, report)
		}
		return m[group]
	}
	f := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	row := `(?m)^\s+%s\s+([0-9.]+)\s+([0-9.]+)`
	want := strings.Join([]string{
		find(`\[timing\] decode: .* forward: ([0-9.]+) tok/s`, 1),
		find(fmt.Sprintf(row, "layer_total"), 2),
		fmt.Sprintf("%.3f", f(find(fmt.Sprintf(row, "total"), 2))-f(find(fmt.Sprintf(row, "layers"), 2))),
		find(`\[timing\] prefill: .* forward: ([0-9.]+) tok/s`, 1),
		find(fmt.Sprintf(row, "layer_total"), 1),
		fmt.Sprintf("%.3f", f(find(fmt.Sprintf(row, "total"), 1))-f(find(fmt.Sprintf(row, "layers"), 1))),
	}, " ")
	if got := peerParse(t, "timed_split "+file); got != want {
		t.Errorf("timed_split: %q, the report says %q\n%s", got, want, report)
	}
	if got, want := peerParse(t, "untimed_rate "+file), find(`forward alone ([0-9.]+) tok/s\)`, 1); got != want {
		t.Errorf("untimed_rate: %q, the report says %q", got, want)
	}
	if got, want := peerParse(t, "untimed_median "+file), fmt.Sprintf("%.2f", 1000/f(find(`median step ([0-9.]+) ms;`, 1))); got != want {
		t.Errorf("untimed_median: %q, the report's median step gives %q", got, want)
	}
}

// TestPeerArithmetic: the splits and the 60-layer extrapolation, and their refusals of a split
// whose added layer costs nothing (session 20 printed -77.6 tok/s from one).
func TestPeerArithmetic(t *testing.T) {
	for _, c := range []struct{ call, want string }{
		{"fsplit 470.86 265.92", "1.637 0.487"},   // peer run 9, host K=10
		{"fsplit 1636.28 1617.39", "0.007 0.604"}, // a tiny but positive layer stays a number
		{"fsplit 150 160", "noise noise"},         // one more layer measured faster
		{"fsplit - 160", "- -"},                   // a failed run
		{"fsplit 470.86 265.92 2", "1.637 0.487"}, // N = 2 spelled out
		// peer run 12's resident K=4 medians read as a 4-layer stack:
		// (1000/1612.90 - 1000/2336.45) / 3 = 0.064, 0.428 - 0.064 = 0.364
		{"fsplit 2336.45 1612.90 4", "0.064 0.364"},
		{"fsplit 2336.45 2400 4", "noise noise"}, // the stack measured faster
		{"fsplit 2336.45 1612.90 1", "- -"},      // no stack to split by
		{"lsplit 269.35 194.49 195.68", "1.429 1.398 0.886"},
		{"lsplit 143.25 150.97 172.88", "noise noise noise"}, // session 20's K=10 host row
		// peer run 12's resident K=4: fmoe's 1-layer token 0.428 ms against
		// llama.cpp's LA (0.829 ms) less its attention layer (0.123): 0.706 / 0.428
		{"onelayer 2336.45 1206.23 0.123", "1.65x"},
		{"onelayer 2336.45 1206.23 noise", "-"}, // llama.cpp's split was noise
		{"onelayer - 1206.23 0.123", "-"},       // fmoe's runs failed
		{"onelayer 2336.45 1206.23 0.9", "-"},   // an attention layer past the whole LA token
		{"extrap 1.637 0.487", "10.13"},
		{"extrap noise noise", "noise"},
		{"extrap - 1", "-"},
		{"ratio 10.13 11.54", "0.88x"},
		{"ratio noise 11.54", "-"},
		{"ratio 1 0", "-"},
		{"median 1621.97 1686.98 1505.12", "1621.97"}, // peer run 11's 1-layer rounds
		{"median 4 1 3 2", "2"},                       // the lower middle of an even count
		{"median", ""},
	} {
		if got := peerParse(t, c.call); got != c.want {
			t.Errorf("%s: %q, want %q", c.call, got, c.want)
		}
	}
}

package model

import (
	"os"
	"regexp"
	"testing"
)

// TestScriptMetrics: every BenchmarkTieredDecode metric that scripts/gpu-ab.sh and
// scripts/gpu-bench.sh read (by name, in awk) is one the benchmark reports. A renamed metric
// would otherwise turn their tables into zeros in a device call, found only then.
func TestScriptMetrics(t *testing.T) {
	src, err := os.ReadFile("tier_bench_test.go")
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]bool{}
	for _, m := range regexp.MustCompile(`ReportMetric\([^\n]*, "([^"]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		reported[m[1]] = true
	}
	if len(reported) < 10 {
		t.Fatalf("found %d ReportMetric calls in tier_bench_test.go: the pattern no longer matches them", len(reported))
	}
	for _, script := range []string{"../../scripts/gpu-ab.sh", "../../scripts/gpu-bench.sh"} {
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		read := regexp.MustCompile(`\b[mv]\["([^"]+)"\]`).FindAllStringSubmatch(string(b), -1)
		if len(read) == 0 {
			t.Errorf("%s reads no metric by name: the pattern no longer matches it", script)
		}
		for _, m := range read {
			if !reported[m[1]] {
				t.Errorf("%s reads %q, which BenchmarkTieredDecode does not report", script, m[1])
			}
		}
	}
}

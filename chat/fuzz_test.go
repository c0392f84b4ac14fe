package chat

import (
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
)

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// FuzzParser: no input may panic, and any chunking must parse like the
// whole text at once.
func FuzzParser(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.text, c.reasoning, uint64(len(c.text)))
	}
	f.Add("<tool_call><function=<parameter=></parameter></function></tool_call>", false, uint64(7))
	f.Add("<think></think><think><tool_call>{\"name\":1}</tool_call>", true, uint64(3))
	f.Add("\xe4\xbd<tool_call>\n<function=bash>\n<parameter=command>\n\xa0\xff\n", false, uint64(1))
	f.Fuzz(func(t *testing.T, text string, reasoning bool, seed uint64) {
		want := oneShot(reasoning, text)
		checkEvents(t, want)
		r := rand.New(rand.NewPCG(seed, 0))
		raw := feedChunks(testOpts(reasoning), randomChunks(r, text))
		checkEvents(t, raw)
		if got := normalize(raw); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunked parse differs:\n got %s\nwant %s", dump(got), dump(want))
		}
	})
}

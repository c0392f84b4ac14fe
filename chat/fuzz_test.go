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

// FuzzFormatParsers is FuzzParser for the other families' markup.
func FuzzFormatParsers(f *testing.F) {
	f.Add("<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls</arg_value>\n</tool_call>", uint8(0), uint64(3))
	f.Add("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\":[1,{}]}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", uint8(1), uint64(5))
	f.Add("<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}<|tool_call_end|>", uint8(2), uint64(7))
	f.Add("<think>a</think><tool_call><arg_key></arg_value>\xff", uint8(0), uint64(1))
	f.Fuzz(func(t *testing.T, text string, which uint8, seed uint64) {
		fm := formats[int(which)%len(formats)]
		want := normalize(feedChunks(formatOpts(fm, which&0x80 != 0), []string{text}))
		checkEvents(t, want)
		r := rand.New(rand.NewPCG(seed, 0))
		raw := feedChunks(formatOpts(fm, which&0x80 != 0), randomChunks(r, text))
		checkEvents(t, raw)
		if got := normalize(raw); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: chunked parse differs:\n got %s\nwant %s", fm.Name, dump(got), dump(want))
		}
	})
}

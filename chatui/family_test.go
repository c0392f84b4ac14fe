package chatui

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestChatFamilyPacks holds a two-turn chat on a pack of each family's tiny checkpoint with its
// published template and the built-in tool offered: the second turn is appended to the session
// (the family's end of turn is found in its template), so only its new tokens are fed.
func TestChatFamilyPacks(t *testing.T) {
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			e, err := convo.Open(convotest.PackFamily(t, "..", f), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			var out bytes.Buffer
			in := "Hello there\n/stats\nAnd again\n/stats\n/exit\n"
			c, err := New(e, NewPlainReader(strings.NewReader(in), &out, true), &out, Options{MaxTokens: 4})
			if err != nil {
				t.Fatal(err)
			}
			got := run(t, c)
			t.Log(got)
			stats := regexp.MustCompile(`session: (\d+) tokens .* (\d+) prompt tokens fed, (\d+) reused`).FindAllStringSubmatch(got, -1)
			if len(stats) != 2 {
				t.Fatalf("want two /stats reports in %q", got)
			}
			n := func(i, j int) int { v, _ := strconv.Atoi(stats[i][j]); return v }
			if reused := n(1, 3) - n(0, 3); reused < n(0, 1)-8 {
				t.Errorf("the second turn reused %d tokens of the session's %d:\n%s", reused, n(0, 1), got)
			}
		})
	}
}

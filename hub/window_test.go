package hub

import (
	"fmt"
	"testing"
)

// synthIndex lays out layers over shards: place(layer) gives the shard of the layer's dense
// tensors and of each of its experts.
func synthIndex(layers, experts int, dense func(l int) string, expert func(l, e int) string) map[string]string {
	m := map[string]string{"model.embed_tokens.weight": "s1", "lm_head.weight": dense(layers - 1)}
	for l := range layers {
		m[fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", l)] = dense(l)
		m[fmt.Sprintf("model.layers.%d.mlp.gate.weight", l)] = dense(l)
		for e := range experts {
			for _, p := range []string{"gate_proj", "up_proj", "down_proj"} {
				m[fmt.Sprintf("model.layers.%d.mlp.experts.%d.%s.weight", l, e, p)] = expert(l, e)
			}
		}
	}
	return m
}

func TestShardWindow(t *testing.T) {
	sizes := map[string]int64{"s1": 10, "s2": 10, "s3": 10, "s4": 10}
	shard := func(i int) string { return fmt.Sprintf("s%d", i+1) }
	for _, tc := range []struct {
		name  string
		index map[string]string
		want  [4]int64 // per block, per layer, convert today, interleaved
	}{
		// One layer per shard: a streaming pack holds one shard at a time; today's order
		// needs every dense tensor first, so all of them.
		{"layer per shard", synthIndex(4, 2, shard, func(l, _ int) string { return shard(l) }), [4]int64{10, 10, 40, 10}},
		// Each layer's dense tensors sit in the shard before its experts: a layer needs two
		// shards, a block one; today's order needs the three shards holding dense tensors.
		{"layer straddles", synthIndex(3, 2, shard, func(l, _ int) string { return shard(l + 1) }), [4]int64{10, 20, 30, 20}},
		// An expert split over two shards (gate/up in one, down in the next) pins both.
		{"expert straddles", func() map[string]string {
			m := synthIndex(2, 1, func(l int) string { return shard(2 * l) }, func(l, _ int) string { return shard(2 * l) })
			m["model.layers.0.mlp.experts.0.down_proj.weight"] = "s2"
			m["model.layers.1.mlp.experts.0.down_proj.weight"] = "s4"
			return m
		}(), [4]int64{20, 20, 30, 20}},
		// The embedding and lm_head in the first shard (as in some checkpoints): the
		// interleaved order writes lm_head last, so the first shard stays to the end.
		{"lm_head first", func() map[string]string {
			m := synthIndex(4, 2, shard, func(l, _ int) string { return shard(l) })
			m["lm_head.weight"] = "s1"
			return m
		}(), [4]int64{10, 10, 40, 20}},
	} {
		for o, want := range tc.want {
			w, err := ShardWindow(tc.index, sizes, Order(o))
			if err != nil {
				t.Fatal(err)
			}
			if w.PeakBytes != want || w.TotalBytes != 40 {
				t.Errorf("%s, %v: peak %d of %d, want %d", tc.name, Order(o), w.PeakBytes, w.TotalBytes, want)
			}
		}
	}
	if _, err := ShardWindow(map[string]string{"x": "s9"}, sizes, OrderBlock); err == nil {
		t.Error("a shard of unknown size was accepted")
	}
}

func TestUnitOf(t *testing.T) {
	for tensor, want := range map[string]string{
		"language_model.model.layers.3.self_attn.q_proj.scales":         "t:language_model.model.layers.3.self_attn.q_proj",
		"language_model.model.layers.3.self_attn.q_proj.weight":         "t:language_model.model.layers.3.self_attn.q_proj",
		"language_model.model.layers.3.mlp.switch_mlp.up_proj.biases":   "L3/experts",
		"model.language_model.layers.7.mlp.experts.gate_up_proj":        "L7/experts",
		"model.language_model.layers.7.mlp.experts.12.down_proj.weight": "L7/e12",
		"model.layers.0.block_sparse_moe.experts.5.w2.weight":           "L0/e5",
		"lm_head.weight": "t:lm_head",
	} {
		if got := unitOf(tensor, OrderBlock); got != want {
			t.Errorf("unitOf(%s) = %s, want %s", tensor, got, want)
		}
	}
}

package server

import (
	"math"
	"time"

	"github.com/fmoe/fmoe/convo"
)

// timings say how fast a reply was made, as llama.cpp's server reports
// them (the chat page shows them): the prompt tokens computed (cached ones
// excluded) and the tokens generated, each with its time and rate.
type timings struct {
	CacheN             int     `json:"cache_n"`
	PromptN            int     `json:"prompt_n"`
	PromptMS           float64 `json:"prompt_ms"`
	PromptPerSecond    float64 `json:"prompt_per_second"`
	PredictedN         int     `json:"predicted_n"`
	PredictedMS        float64 `json:"predicted_ms"`
	PredictedPerSecond float64 `json:"predicted_per_second"`
}

func newTimings(res *convo.Result) *timings {
	t := &timings{
		CacheN: res.ReusedTokens, PromptN: res.PromptTokens - res.ReusedTokens, PromptMS: msec(res.PrefillTime),
		PredictedN: len(res.IDs), PredictedMS: msec(res.GenerateTime),
	}
	t.PromptPerSecond = rate(t.PromptN, res.PrefillTime)
	t.PredictedPerSecond = rate(t.PredictedN, res.GenerateTime)
	return t
}

// rate is n per second over d, to two decimals, or 0 when d is 0.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*100) / 100
}

package backend

import "fmt"

// CheckRouteTopK validates RouteTopK's sizes (DeviceRouter): logits hold
// [T, E] values, ids and w [T, K], status at least one; 1 ≤ K ≤ E < 2^24
// (ids are float32 values, exact below 2^24).
func CheckRouteTopK(backendName string, nIDs, nW, nStatus, nLogits, T, E, K int) error {
	switch {
	case T <= 0 || E <= 0 || K <= 0 || K > E || E >= 1<<24:
		return fmt.Errorf("%s: route top-%d of %d experts for %d tokens", backendName, K, E, T)
	case nLogits < T*E:
		return fmt.Errorf("%s: route: logits hold %d values, need %d tokens × %d experts", backendName, nLogits, T, E)
	case nIDs < T*K || nW < T*K:
		return fmt.Errorf("%s: route: ids hold %d values and weights %d, need %d tokens × %d", backendName, nIDs, nW, T, K)
	case nStatus < 1:
		return fmt.Errorf("%s: route: empty status buffer", backendName)
	}
	return nil
}

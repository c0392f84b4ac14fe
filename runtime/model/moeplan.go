package model

// moePlan groups one layer's routed (token, expert) picks by expert. Its
// slices live in the Session and are re-used every layer and step, so a
// decode step does not allocate maps per layer per token.
type moePlan struct {
	host []float32 // router logits read back, [T, E]
	idx  []int     // picks [T, K]
	wts  []float32 // their weights [T, K]

	// After group: ids holds the distinct experts in ascending order;
	// expert ids[i]'s tokens are rows[start[i]:start[i+1]] in ascending
	// order, with weights w[start[i]:start[i+1]]. at[e] is i for e = ids[i].
	ids, start, at, rows []int
	w                    []float32

	// After split: each rank's part, and each expert's slot in its part.
	part []planPart
	slot []int
}

func growTo[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// reset sizes the plan for T tokens, E experts and K picks per token.
func (p *moePlan) reset(T, E, K int) {
	p.host = growTo(p.host, T*E)
	p.idx = growTo(p.idx, T*K)
	p.wts = growTo(p.wts, T*K)
	p.rows = growTo(p.rows, T*K)
	p.w = growTo(p.w, T*K)
	p.at = growTo(p.at, E)
	p.ids = p.ids[:0]
	p.start = p.start[:0]
}

// group fills ids, start, rows and w from idx and wts (a counting sort by
// expert, stable in the token). The order matches the one the combine
// must sum in: ascending expert, then ascending token.
func (p *moePlan) group(K int) {
	cnt := p.at
	clear(cnt)
	for _, e := range p.idx {
		cnt[e]++
	}
	n := 0
	for e, c := range cnt {
		if c == 0 {
			continue
		}
		cnt[e] = n // from here on, the next free slot of expert e
		p.ids = append(p.ids, e)
		p.start = append(p.start, n)
		n += c
	}
	p.start = append(p.start, n)
	for j, e := range p.idx {
		s := cnt[e]
		p.rows[s], p.w[s] = j/K, p.wts[j]
		cnt[e]++
	}
	for i, e := range p.ids {
		p.at[e] = i
	}
}

// expert returns the tokens and weights of expert e (one of ids) and the
// index of its first row in rows.
func (p *moePlan) expert(e int) (rows []int, first int) {
	i := p.at[e]
	return p.rows[p.start[i]:p.start[i+1]], p.start[i]
}

// planPart is one rank's share of a layer's plan: its experts (ascending),
// and their rows and weights in that order, which is the order its partial
// sum adds them in.
type planPart struct {
	ids, rows []int
	w         []float32
}

// split divides the grouped plan among n ranks by owner (owner[e] is expert
// e's rank; nil puts every expert on rank 0, whose part is then the whole
// plan in its own order). slot[e] becomes expert e's first row in its
// rank's rows.
func (p *moePlan) split(owner []int, n int) {
	p.part = growTo(p.part, n)
	for d := range p.part {
		pt := &p.part[d]
		pt.ids, pt.rows, pt.w = pt.ids[:0], pt.rows[:0], pt.w[:0]
	}
	p.slot = growTo(p.slot, len(p.at))
	for i, e := range p.ids {
		d := 0
		if owner != nil {
			d = owner[e]
		}
		pt := &p.part[d]
		p.slot[e] = len(pt.rows)
		pt.ids = append(pt.ids, e)
		pt.rows = append(pt.rows, p.rows[p.start[i]:p.start[i+1]]...)
		pt.w = append(pt.w, p.w[p.start[i]:p.start[i+1]]...)
	}
}

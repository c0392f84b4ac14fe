#!/usr/bin/env python3
"""Summarise a CUDA timeline (FMOE_CUDA_TRACE=FILE, runtime/backend/cuda/trace.go) of decode steps.

Usage: gpu-timeline.py FILE [FIRST [COUNT]] [--dump]
Tokens are cut at the greedy pick on the device (argmax_finite), else at the lm_head's read-back
(the largest read); FIRST and COUNT pick them (default:
the 60 tokens before the last 40, i.e. BenchmarkTieredDecode's timed ones when it ran 60 timed
tokens: after them come 20 tokens timing the head and 20 under Timing, whose phases add reads).
Per token, averaged: its span on the device; the link's busy time (the union of the copies' intervals,
each from the copy's start on its copy stream to its end) and how many copies the compute waited for
(misses) or not (prefetches); per layer read-back (every read of the router's logits or ids), the
device's time from that read to the end of the first kernel the host queued after it came back (the
held experts' graph, any copy waited for, and that kernel: an upper bound of the device's idle time,
not the idle time itself), and the host's time from the read's return to its next graph launch.
Every kernel's and graph's mark is its end (an event recorded after its launch), a read's its start:
the time between a read's mark and the next graph's is the read and that graph (session 32's
correction of session 31's reading).
Then the copies' starts: behind the copy before them on their stream, or not, and of the others how
many start just after a compute mark (a fill waiting for the compute queued before its victim's
eviction, session 32).
--dump then prints, for the first selected token with one copy the compute waited for and the first
with none, every mark from the token's start (device µs, host µs, stream, label, arg): where one
miss's time goes (issue 12's K=4 layer with one miss); where there is neither (every expert over the
link, issue 13's row 2), the first selected token. Host-only marks have no device time: readret (a
read's return), write (a small write queued, e.g. the CPU share's rows sent to the device), and the
CPU share's share.start, share.wait and share.done (its CPUs' time in µs), which a line sums up.
"""
import bisect
import sys


def load(path):
    rows = []
    with open(path) as f:
        next(f, None)
        for n, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                sys.exit(f"{path}:{n}: want 5 tab-separated fields (device us, host us, stream, label, arg), got {len(parts)}")
            dev, host, stream, label, arg = parts
            rows.append((float(dev), float(host), stream, label, int(arg)))
    return rows


def tokens(rows):
    # A greedy step picks its token on the device (argmax_finite) and reads 2 values back; the
    # logits' read (the largest) marks a step only where the head reads them (FMOE_BENCH_LOGITS=1).
    cut = [i for i, r in enumerate(rows) if r[3] == "argmax_finite"]
    if not cut:
        head = max((r[4] for r in rows if r[3] == "read"), default=None)
        if head is None:
            sys.exit("no greedy pick and no read in the timeline: no decode steps to cut")
        cut = [i for i, r in enumerate(rows) if r[3] == "read" and r[4] == head]
    return [rows[a:b] for a, b in zip(cut, cut[1:])]


def summarise(tok):
    c = [r for r in tok if r[2] == "c"]
    span = c[-1][0] - c[0][0]
    # Copies: cp0 .. cp1 on their stream ('x', or 'p' for prefetches on a
    # stream of their own); the link is busy over the union of them.
    spans, miss, pf, start = [], 0, 0, {}
    for r in tok:
        if r[2] not in ("x", "p"):
            continue
        if r[3] == "cp0":
            start[r[2]] = r[0]
        elif r[3] == "cp1" and start.get(r[2]) is not None:
            spans.append((start[r[2]], r[0]))
            miss += r[4]
            pf += 1 - r[4]
            start[r[2]] = None
    link, end = 0.0, None
    for a, b in sorted(spans):
        if end is None or a > end:
            link, end = link + b - a, b
        elif b > end:
            link, end = link + b - end, b
    idle, hostgap, reads = 0.0, 0.0, 0
    for i, r in enumerate(tok):
        if r[3] != "read" or r[2] != "c" or r[4] <= 2:
            continue  # one- and two-value reads are the head's (its probe, the greedy pick)
        back = next((x for x in tok[i + 1:] if x[3] == "readret"), None)
        if back is None:
            continue
        nxt = next((x for x in tok[i + 1:] if x[2] == "c" and x[1] > back[1] and x[3] not in ("read",)), None)
        if nxt is not None and nxt[0] > r[0]:
            idle += nxt[0] - r[0]
        graph = next((x for x in tok[i + 1:] if x[3] == "graph" and x[1] > back[1]), None)
        if graph is not None:
            hostgap += graph[1] - back[1]
        reads += 1
    return span, link, miss, pf, idle, hostgap, reads


def fill_starts(toks, near=6.0, behind=3.0):
    """How the selected tokens' copies start: behind the copy before them on their stream (within
    `behind` µs of its end), or not; and of the others, how many start within `near` µs after a mark
    of the compute stream (a kernel's or graph's end). A fill's cp0 is marked after its wait for the
    slot's free event, which evict records on the compute stream after all the work queued by then:
    copies that start just after a compute mark are waiting for that work, not for the link."""
    queued, free, after = 0, 0, 0
    for tok in toks:
        c = sorted(r[0] for r in tok if r[2] == "c" and r[0] >= 0)
        last = {}
        for r in tok:
            if r[2] not in ("x", "p") or r[0] < 0:
                continue
            if r[3] == "cp1":
                last[r[2]] = r[0]
                continue
            if r[3] != "cp0":
                continue
            prev = last.get(r[2])
            if prev is not None and 0 <= r[0] - prev <= behind:
                queued += 1
                continue
            free += 1
            i = bisect.bisect_right(c, r[0])
            if i and r[0] - c[i - 1] <= near:
                after += 1
    return queued, free, after


def dump(toks):
    """Every mark of the first token with one waited-for copy and of the first with none."""
    def waited(t):
        return sum(1 for r in t if r[3] == "cp1" and r[4] == 1)
    shown = 0
    for want in (1, 0):
        t = next((t for t in toks if waited(t) == want), None)
        if t is None:
            print(f"(no token with {want} waited-for copies)")
            continue
        show(t, f"a token with {want} waited-for copies")
        shown += 1
    if not shown and toks:
        # Every expert over the link (issue 13's row 2): each token waits for several copies.
        show(toks[0], f"the first token, with {waited(toks[0])} waited-for copies")


def show(t, what):
    d0, h0 = t[0][0], t[0][1]
    print(f"## {what}: device us, host us, stream, label, arg")
    for r in t:
        dev = f"{r[0] - d0:8.1f}" if r[0] >= 0 else "       -"
        print(f"{dev} {r[1] - h0:8.1f} {r[2]} {r[3]} {r[4]}")


def main():
    args = [a for a in sys.argv[1:] if a != "--dump"]
    rows = load(args[0])
    toks = tokens(rows)
    first = int(args[1]) if len(args) > 1 else max(0, len(toks) - 40 - 60)
    count = int(args[2]) if len(args) > 2 else 60
    sel = [summarise(t) for t in toks[first:first + count]]
    n = len(sel)
    if n == 0:
        sys.exit("no tokens in that range")
    avg = [sum(s[i] for s in sel) / n for i in range(7)]
    span, link, miss, pf, idle, hostgap, reads = avg
    print(f"{n} tokens ({first}..{first + n - 1} of {len(toks)})")
    print(f"device span per token      {span:9.1f} us")
    print(f"link busy per token        {link:9.1f} us ({100 * link / span:.0f}% of the span): "
          f"{miss:.2f} copies waited for, {pf:.2f} not (prefetches)")
    if reads:
        print(f"per read-back of ids or logits ({reads:.1f} a token): device from the read to the end of "
              f"the host's next kernel {idle / reads:7.1f} us; host from the read's return to its next graph {hostgap / reads:7.1f} us")
    queued, free, after = fill_starts(toks[first:first + count])
    if queued + free:
        print(f"copies: {queued} behind the copy before them, {free} not; of those {after} start within 6 us "
              f"after a compute mark (waiting for the compute queued before the fill, not for the link)")
    shares(toks[first:first + count])
    if "--dump" in sys.argv[1:]:
        dump(toks[first:first + count])


def shares(toks):
    """The CPU share's host marks (runtime/model, --cpu-experts): per share, the host's time from
    its start to its wait (the link's part queued and waited for meanwhile), the host's wait for
    the CPUs, the CPUs' own time (share.done's argument, µs), and the host's time from the share's
    end to the next compute mark (the CPUs' rows written to the device, the combine queued)."""
    own, waits, cpus, after = [], [], [], []
    for tok in toks:
        start = wait = None
        for i, r in enumerate(tok):
            if r[2] != "h":
                continue
            if r[3] == "share.start":
                start = r[1]
            elif r[3] == "share.wait":
                wait = r[1]
            elif r[3] == "share.done" and start is not None and wait is not None:
                own.append(wait - start)
                waits.append(r[1] - wait)
                cpus.append(r[4])
                nxt = next((x for x in tok[i + 1:] if x[2] == "c"), None)
                if nxt is not None:
                    after.append(nxt[1] - r[1])
                start = wait = None
    if not own:
        return
    mean = lambda v: sum(v) / len(v) if v else float("nan")
    print(f"CPU share ({len(own) / len(toks):.1f} a token): host from its start to its wait {mean(own):7.1f} us, "
          f"then waits {mean(waits):7.1f} us for the CPUs (their own time {mean(cpus):7.1f} us); "
          f"host from its end to the next compute mark {mean(after):7.1f} us")


if __name__ == "__main__":
    main()
